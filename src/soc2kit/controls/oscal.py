"""OSCAL 1.2.1 outputs: a component definition and the catalog it points at.

No OSCAL catalog of the Trust Services Criteria is published, so soc2kit writes
its own from the criteria data (IDs and our own titles, with a link to the
AICPA publication) and the component definition's ``source`` points at it.
UUIDs are derived (UUIDv5) from the service name and stable identifiers, so a
regeneration of the same code yields the same document.
"""

from __future__ import annotations

import uuid
from typing import Any

from soc2kit.controls.catalog import criteria
from soc2kit.controls.model import Report

OSCAL_VERSION = "1.2.1"
NS = "urn:soc2kit:oscal"
_ROOT = uuid.UUID("5c0c2d1e-0a7e-4f55-9b1e-50c2c17a0001")
AICPA_URL = (
    "https://www.aicpa-cima.com/resources/download/"
    "2017-trust-services-criteria-with-revised-points-of-focus-2022"
)
CATALOG_FILE = "catalog.json"


def _uuid(service: str, *parts: str) -> str:
    return str(uuid.uuid5(_ROOT, "/".join((service, *parts))))


def _prop(name: str, value: str) -> dict[str, str]:
    return {"name": name, "ns": NS, "value": value}


def component_definition(report: Report, hashes: dict[str, str]) -> dict[str, Any]:
    """``hashes`` maps evidence file paths (relative to the output folder) to SHA-256."""
    s = report.service
    resources = []
    resource_ids: dict[str, str] = {}
    for item in report.evidence:
        path = f"evidence/{item.id}.json"
        rid = _uuid(s, "evidence", item.id)
        resource_ids[item.id] = rid
        rlink: dict[str, Any] = {"href": path, "media-type": "application/json"}
        if path in hashes:
            rlink["hashes"] = [{"algorithm": "SHA-256", "value": hashes[path]}]
        resources.append(
            {
                "uuid": rid,
                "title": item.title,
                "description": item.summary,
                "props": [_prop("evidence-result", item.result), _prop("method", item.method)],
                "rlinks": [rlink],
            }
        )
    requirements = []
    for row in report.criteria:
        if row.status not in ("service-provided", "shared"):
            continue
        parts = []
        for c in row.controls:
            found = "; ".join(f"{e.id}: {e.summary}" for e in c.evidence)
            parts.append(
                f"{c.control.id} {c.control.title}. {c.control.statement} Evidence: {found}."
            )
        parts.append(f"Organization responsibility: {row.organization}")
        links = [
            {"href": f"#{resource_ids[e.id]}", "rel": "evidence"}
            for c in row.controls
            for e in c.evidence
        ]
        requirements.append(
            {
                "uuid": _uuid(s, "requirement", row.criterion.id),
                "control-id": row.criterion.id,
                "description": " ".join(parts),
                "props": [
                    _prop("responsibility", row.status),
                    *[_prop("soc2kit-control", c.control.id) for c in row.controls],
                ],
                "links": links,
            }
        )
    component: dict[str, Any] = {
        "uuid": _uuid(s, "component"),
        "type": "service",
        "title": s,
        "description": (
            f"The {s} API service (FastAPI with soc2kit), environment {report.environment}, "
            f"application {report.app_ref}."
        ),
        "props": [
            _prop("environment", report.environment),
            _prop("trust-categories", " ".join(("security", *report.scope))),
        ],
        "control-implementations": [
            {
                "uuid": _uuid(s, "implementation"),
                "source": CATALOG_FILE,
                "description": (
                    "Trust Services Criteria this service contributes to, with the soc2kit "
                    "controls and the evidence gathered from the running application. Not a "
                    "SOC 2 report; criteria not listed are the organization's to cover."
                ),
                "implemented-requirements": requirements,
            }
        ],
    }
    if not requirements:
        # OSCAL requires at least one requirement per implementation: omit the block.
        del component["control-implementations"]
    return {
        "component-definition": {
            "uuid": _uuid(s, "component-definition"),
            "metadata": {
                "title": f"{s}: soc2kit control implementation",
                "last-modified": report.generated,
                "version": report.version,
                "oscal-version": OSCAL_VERSION,
            },
            "components": [component],
            "back-matter": {"resources": resources} if resources else {},
        }
    }


def catalog(report: Report) -> dict[str, Any]:
    """Our own OSCAL catalog of the 61 criteria (IDs and paraphrased titles only)."""
    s = report.service
    groups: dict[str, dict[str, Any]] = {}
    for c in criteria():
        series = c.id.rsplit(".", 1)[0]
        group = groups.setdefault(
            series,
            {
                "id": series.lower(),
                "title": c.series,
                "props": [_prop("category", c.category)],
                "controls": [],
            },
        )
        group["controls"].append(
            {
                "id": c.id,
                "title": c.title,
                "props": [
                    {"name": "label", "value": c.id},
                    _prop("software-relevant", "true" if c.software_relevant else "false"),
                ],
                "parts": [
                    {
                        "id": f"{c.id}_gdn",
                        "name": "guidance",
                        "prose": c.note,
                    }
                ],
            }
        )
    return {
        "catalog": {
            "uuid": _uuid(s, "catalog"),
            "metadata": {
                "title": "Trust Services Criteria (2017, revised points of focus 2022): "
                "IDs with soc2kit's own titles",
                "last-modified": report.generated,
                "version": "2017-2022",
                "oscal-version": OSCAL_VERSION,
                "remarks": "Titles and guidance are soc2kit's paraphrases, not AICPA text.",
            },
            "groups": list(groups.values()),
            "back-matter": {
                "resources": [
                    {
                        "uuid": _uuid(s, "aicpa"),
                        "title": "AICPA 2017 Trust Services Criteria "
                        "(revised points of focus 2022)",
                        "rlinks": [{"href": AICPA_URL}],
                    }
                ]
            },
        }
    }

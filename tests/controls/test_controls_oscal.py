"""component-definition.json: valid OSCAL 1.2.1, linked to its catalog and evidence, stable.

Validated against NIST's published schema (tests/data/oscal_component_schema.json)
with a draft-7 validator whose ``pattern`` uses the ``regex`` package.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.controls.controls_helpers import (
    assert_oscal,
    build_app,
    generate,
    oscal_errors,
    requirements,
    uuids,
)
from tests.controls.controls_models import CtlBase

import soc2kit


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text("utf-8"))
    return data


def test_component_definition_validates_and_links_catalog_and_evidence(
    ctl_settings: Callable[..., soc2kit.Settings], tmp_path: Path
) -> None:
    app, kit = build_app(ctl_settings())
    kit.policy.grant("clerk", "ledger", "read")
    CtlBase.metadata.create_all(kit.engine)  # its encrypted columns implement SK-CR-01
    generate(app, tmp_path / "out", ("availability", "processing-integrity"))
    assert_oscal(tmp_path / "out")
    doc = load(tmp_path / "out" / "component-definition.json")
    definition = doc["component-definition"]
    assert definition["metadata"]["oscal-version"] == "1.2.1"
    reqs = requirements(tmp_path / "out")
    assert {"CC6.1", "CC6.6", "A1.1", "PI1.2"} <= {r["control-id"] for r in reqs}
    cc61 = next(r for r in reqs if r["control-id"] == "CC6.1")
    assert {p["value"] for p in cc61["props"] if p["name"] == "soc2kit-control"} == {
        "SK-AC-01",
        "SK-AC-02",
        "SK-CR-01",
    }
    assert "Organization responsibility:" in cc61["description"]

    # The validator is not vacuous: each of these breaks the schema.
    broken = copy.deepcopy(doc)
    del broken["component-definition"]["metadata"]
    assert any("'metadata' is a required property" in e for e in oscal_errors(broken))

    spaced = copy.deepcopy(doc)
    first = spaced["component-definition"]["components"][0]["control-implementations"][0]
    first["implemented-requirements"][0]["control-id"] = "CC 6.1"
    errors = oscal_errors(spaced)
    assert errors and all("control-id" in e and "does not match" in e for e in errors), errors

    bad_uuid = copy.deepcopy(doc)
    bad_uuid["component-definition"]["uuid"] = "not-a-uuid"
    assert oscal_errors(bad_uuid)

    no_requirements = copy.deepcopy(doc)
    first = no_requirements["component-definition"]["components"][0]
    first["control-implementations"][0]["implemented-requirements"] = []
    assert oscal_errors(no_requirements)

    # ... while \p{L} really is a letter class (Python's re would not even compile it).
    unicode_id = copy.deepcopy(doc)
    first = unicode_id["component-definition"]["components"][0]["control-implementations"][0]
    first["implemented-requirements"][0]["control-id"] = "Ü6.1"
    assert oscal_errors(unicode_id) == []

    # A changed evidence file no longer matches the hash the definition recorded.
    routes = tmp_path / "out" / "evidence" / "routes.json"
    recorded = next(
        r["rlinks"][0]["hashes"][0]["value"]
        for r in definition["back-matter"]["resources"]
        if r["rlinks"][0]["href"] == "evidence/routes.json"
    )
    assert hashlib.sha256(routes.read_bytes()).hexdigest() == recorded
    routes.write_text(routes.read_text("utf-8").replace('"pass"', '"fail"', 1), "utf-8")
    assert hashlib.sha256(routes.read_bytes()).hexdigest() != recorded


def test_uuids_are_stable_across_generations_and_derived_from_the_service(
    ctl_settings: Callable[..., soc2kit.Settings], tmp_path: Path
) -> None:
    outs = []
    for run, name in enumerate(("ledger", "ledger", "payroll")):
        app, kit = build_app(ctl_settings(service_name=name))
        kit.policy.grant("clerk", "ledger", "read")
        generate(app, tmp_path / str(run), ("privacy",))
        outs.append(tmp_path / str(run))

    def ids(out: Path) -> tuple[list[str], list[str]]:
        return (
            uuids(load(out / "component-definition.json")),
            uuids(load(out / "catalog.json")),
        )

    first, second, other = (ids(out) for out in outs)
    assert first == second
    component, catalog = first
    assert len(component) == len(set(component)) > 20  # definition, component, reqs, evidence
    assert len(catalog) == len(set(catalog))
    assert set(component).isdisjoint(other[0]) and set(catalog).isdisjoint(other[1])

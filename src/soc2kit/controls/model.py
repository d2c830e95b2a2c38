"""One evidence model from which every document is rendered.

Statuses are derived, never asserted: a control is implemented when its
evidence shows the mechanism in the app; a criterion is service-provided or
shared only when at least one implemented control maps to it, otherwise the
organization's own processes must cover it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from soc2kit.controls.catalog import (
    CONTROLS,
    MAPPINGS,
    OPTIONAL_CATEGORIES,
    Category,
    Control,
    Criterion,
    criteria,
)
from soc2kit.controls.evidence import EvidenceItem

CriterionStatus = Literal["service-provided", "shared", "organization-provided", "out-of-scope"]
ControlStatus = Literal[
    "implemented", "implemented-with-findings", "not-implemented", "not-assessed"
]

STATUS_LABELS: dict[str, str] = {
    "service-provided": "service-provided",
    "shared": "shared",
    "organization-provided": "organization-provided",
    "out-of-scope": "out of scope",
    "implemented": "implemented",
    "implemented-with-findings": "implemented, with findings",
    "not-implemented": "not implemented",
    "not-assessed": "not assessed (no evidence attached)",
}


@dataclass(slots=True)
class ControlResult:
    control: Control
    status: ControlStatus
    evidence: list[EvidenceItem]


@dataclass(slots=True)
class CriterionResult:
    criterion: Criterion
    status: CriterionStatus
    controls: list[ControlResult] = field(default_factory=list)
    organization: str = ""
    gap: str | None = None


@dataclass(slots=True)
class Report:
    service: str
    environment: str
    app_ref: str
    scope: tuple[Category, ...]
    generated: str
    commit: str | None
    version: str
    controls: list[ControlResult]
    criteria: list[CriterionResult]
    evidence: list[EvidenceItem]

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {
            "service-provided": 0,
            "shared": 0,
            "organization-provided": 0,
            "out-of-scope": 0,
        }
        for c in self.criteria:
            out[c.status] += 1
        return out


def _control_status(items: list[EvidenceItem]) -> ControlStatus:
    primary = items[0]
    if primary.result == "not-implemented":
        return "not-implemented"
    if primary.result == "not-collected":
        return "not-assessed"
    if any(i.result == "fail" for i in items):
        return "implemented-with-findings"
    return "implemented"


def build_report(
    evidence: list[EvidenceItem],
    *,
    scope: tuple[Category, ...],
    service: str,
    environment: str,
    app_ref: str,
    generated: str,
    commit: str | None,
    version: str,
) -> Report:
    by_id = {e.id: e for e in evidence}
    controls = [
        ControlResult(
            c, _control_status([by_id[i] for i in c.evidence]), [by_id[i] for i in c.evidence]
        )
        for c in CONTROLS
    ]
    control_by_id = {c.control.id: c for c in controls}
    in_scope = {"security", *scope}
    rows: list[CriterionResult] = []
    for criterion in criteria():
        if criterion.category not in in_scope:
            rows.append(CriterionResult(criterion, "out-of-scope"))
            continue
        mapping = MAPPINGS.get(criterion.id)
        if mapping is None:
            rows.append(
                CriterionResult(
                    criterion,
                    "organization-provided",
                    organization=criterion.note,
                    gap=None
                    if not criterion.software_relevant
                    else ("soc2kit has no control for this criterion"),
                )
            )
            continue
        mapped = [control_by_id[c] for c in mapping.controls]
        implemented = [
            c for c in mapped if c.status in ("implemented", "implemented-with-findings")
        ]
        missing = [c.control.id for c in mapped if c not in implemented]
        if not implemented:
            rows.append(
                CriterionResult(
                    criterion,
                    "organization-provided",
                    controls=mapped,
                    organization=criterion.note,
                    gap="mapped soc2kit control(s) not implemented in this app: "
                    + ", ".join(missing),
                )
            )
            continue
        rows.append(
            CriterionResult(
                criterion,
                mapping.responsibility,
                controls=implemented,
                organization=mapping.organization,
                gap=("also mapped, not implemented here: " + ", ".join(missing))
                if missing
                else None,
            )
        )
    return Report(
        service=service,
        environment=environment,
        app_ref=app_ref,
        scope=tuple(c for c in OPTIONAL_CATEGORIES if c in scope),
        generated=generated,
        commit=commit,
        version=version,
        controls=controls,
        criteria=rows,
        evidence=evidence,
    )

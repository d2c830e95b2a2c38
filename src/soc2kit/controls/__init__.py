"""Auditor documents generated from the running app: control mapping, OSCAL, evidence.

``soc2kit controls`` introspects an installed app (routes, identity, access
policy, probed HTTP behaviour, encrypted columns, the audit log's verify
result, ...) and writes, from one evidence model, ``controls.md``,
``controls.html``, an OSCAL component definition with its catalog, and the
evidence files with a SHA-256 manifest. ``soc2kit evidence`` exports the
populations an auditor samples from for a Type II period.
"""

from soc2kit.controls.catalog import CONTROLS, OPTIONAL_CATEGORIES, Control, Criterion, criteria
from soc2kit.controls.evidence import EvidenceItem
from soc2kit.controls.generate import collect, compare, parse_scope, write
from soc2kit.controls.model import Report

__all__ = [
    "CONTROLS",
    "OPTIONAL_CATEGORIES",
    "Control",
    "Criterion",
    "EvidenceItem",
    "Report",
    "collect",
    "compare",
    "criteria",
    "parse_scope",
    "write",
]

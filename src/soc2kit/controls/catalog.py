"""The criteria (data) and soc2kit's own control catalog mapped onto them.

The criteria list is data shipped with the package (IDs and titles in our own
words, never AICPA text). The controls and the criterion-to-control mapping are
soc2kit's judgement, written down here once so every document derives from the
same table; a reviewer with SOC 2 audit experience should check it before a
team relies on it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Literal

Category = Literal["security", "availability", "confidentiality", "processing-integrity", "privacy"]
OPTIONAL_CATEGORIES: tuple[Category, ...] = (
    "availability",
    "confidentiality",
    "processing-integrity",
    "privacy",
)
Responsibility = Literal["service-provided", "shared"]


@dataclass(frozen=True, slots=True)
class Criterion:
    id: str
    title: str
    category: Category
    series: str
    software_relevant: bool
    note: str


@dataclass(frozen=True, slots=True)
class Control:
    """One soc2kit control: a testable statement proven by named evidence items."""

    id: str
    title: str
    statement: str
    evidence: tuple[str, ...]
    """Evidence item ids; the control is implemented when the first one is."""


@dataclass(frozen=True, slots=True)
class Mapping:
    """How soc2kit contributes to one criterion, and what stays with the organization."""

    controls: tuple[str, ...]
    responsibility: Responsibility
    organization: str


def _category(text: str) -> Category:
    head = text.split("/", 1)[0].strip().lower()
    if head.startswith("security"):
        return "security"
    if head.startswith("processing"):
        return "processing-integrity"
    for name in ("availability", "confidentiality", "privacy"):
        if head.startswith(name):
            return name
    raise ValueError(f"unknown Trust Services category {text!r}")


@cache
def criteria() -> tuple[Criterion, ...]:
    """The 61 criteria, in the published order."""
    raw = json.loads(
        resources.files("soc2kit.controls").joinpath("data/soc2-tsc-2017.json").read_text("utf-8")
    )
    return tuple(
        Criterion(
            id=c["id"],
            title=c["title"],
            category=_category(c["category"]),
            series=c["category"].split("/", 1)[-1].strip(),
            software_relevant=bool(c["software_relevant"]),
            note=c["note"],
        )
        for c in raw
    )


CONTROLS: tuple[Control, ...] = (
    Control(
        "SK-AC-01",
        "Every route declares who may call it; undeclared routes are refused",
        "Each HTTP and WebSocket route either requires a permission or is declared "
        "public with a reason; the gate answers any undeclared route 403 and "
        "production start-up refuses an app that has one.",
        ("routes",),
    ),
    Control(
        "SK-AC-02",
        "Callers are authenticated with signed, audience-bound tokens or hashed API keys",
        "Bearer tokens are verified (signature, issuer, audience, expiry, allowed "
        "algorithms) before any permission check; API keys are stored hashed with an "
        "expiry, and every failure is an audit event.",
        ("identity",),
    ),
    Control(
        "SK-AC-03",
        "Least-privilege roles with separation of duties, time-boxed break-glass and reviews",
        "Permissions are granted to roles, roles assigned to subjects; declared "
        "conflicting roles cannot be held together; emergency grants expire; every "
        "change, denial and review attestation is an audit event.",
        ("access",),
    ),
    Control(
        "SK-BP-01",
        "Boundary protections on every response",
        "Security headers, trusted hosts, HTTPS enforcement, CORS allowlist, request "
        "body limits, rate limiting and sanitised errors are applied by middleware "
        "to every response, errors included.",
        ("http",),
    ),
    Control(
        "SK-CF-01",
        "Production configuration guard",
        "In production the service refuses to start on an unsafe configuration "
        "(development keys, missing identity provider, weak headers, missing audit "
        "signing key, ...); the same checks run in CI through `soc2kit check`.",
        ("configuration",),
    ),
    Control(
        "SK-CR-01",
        "Confidential fields are encrypted with managed, rotated keys",
        "Declared columns are encrypted with AES-256-GCM bound to their row; data "
        "keys are wrapped by a key-encryption key, rotated, and their lifecycle "
        "audited; equality search goes through keyed blind indexes.",
        ("encryption",),
    ),
    Control(
        "SK-CR-02",
        "Personal data can be disposed of by destroying its subject key",
        "Columns with a per-subject key scope are crypto-shredded by destroying the "
        "subject's key; the destruction is audited and further writes are refused.",
        ("encryption-shredding",),
    ),
    Control(
        "SK-AU-01",
        "Security events and data changes are recorded with the change they describe",
        "Requests, authentication and authorization failures, policy and key "
        "changes and ORM changes are audit events; critical events are written in "
        "the business transaction or before the response, and the request fails "
        "when they cannot be written.",
        ("audit-capture",),
    ),
    Control(
        "SK-AU-02",
        "The audit log is tamper-evident and verified",
        "Events are sealed into an append-only Merkle tree (RFC 9162) with signed "
        "checkpoints copied to an anchor store outside the database; `soc2kit audit "
        "verify` detects changed, removed, reordered and truncated events.",
        ("audit-integrity",),
    ),
    Control(
        "SK-MO-01",
        "Health, readiness and tracing for monitoring",
        "Health and readiness probes report the database, audit writer, policy and "
        "keys; OpenTelemetry traces correlate with audit events without capturing "
        "credentials.",
        ("monitoring",),
    ),
    Control(
        "SK-PI-01",
        "Inputs and outputs follow published schemas",
        "Request bodies and parameters are validated against typed schemas (invalid "
        "input is refused with a 422 that does not echo it) and responses are "
        "declared in the published OpenAPI document.",
        ("schemas",),
    ),
    Control(
        "SK-CM-01",
        "Database schema changes are tracked migrations",
        "soc2kit's tables are managed by Alembic migrations and the service refuses "
        "to start when they are not at the expected revision.",
        ("migrations",),
    ),
    Control(
        "SK-CM-02",
        "Changes are tested before release",
        "The automated test suite ran for this revision; its results are attached as evidence.",
        ("tests",),
    ),
    Control(
        "SK-VM-01",
        "Dependencies are scanned for known vulnerabilities",
        "The installed dependencies were checked against vulnerability databases "
        "(pip-audit); findings are attached as evidence.",
        ("dependency-scan",),
    ),
    Control(
        "SK-DOC-01",
        "System inventory and control documents are generated from the code",
        "Routes, data stores, encrypted fields and dependencies are inventoried by "
        "introspection, and `soc2kit controls --check` fails CI when the committed "
        "documents no longer match the code.",
        ("inventory",),
    ),
)

CONTROLS_BY_ID = {c.id: c for c in CONTROLS}

MAPPINGS: dict[str, Mapping] = {
    "CC2.1": Mapping(
        ("SK-DOC-01",), "shared", "Decide which information supports controls and review it."
    ),
    "CC4.1": Mapping(
        ("SK-AU-02", "SK-CM-02", "SK-DOC-01"),
        "shared",
        "Schedule `soc2kit audit verify` and `soc2kit controls --check`, keep their "
        "history and have someone review the results.",
    ),
    "CC5.2": Mapping(
        ("SK-AC-01", "SK-CF-01", "SK-BP-01"),
        "shared",
        "Select and approve the technology controls; cover infrastructure outside the service.",
    ),
    "CC6.1": Mapping(
        ("SK-AC-01", "SK-AC-02", "SK-CR-01"),
        "shared",
        "Run the identity provider (MFA, password policy), manage infrastructure "
        "access and keep the key-encryption key in a managed key store.",
    ),
    "CC6.2": Mapping(
        ("SK-AC-02", "SK-AC-03"),
        "shared",
        "Register and remove users in the identity provider on joiner/leaver events.",
    ),
    "CC6.3": Mapping(
        ("SK-AC-01", "SK-AC-03"),
        "shared",
        "Approve role requests, perform periodic access reviews and attest them.",
    ),
    "CC6.6": Mapping(
        ("SK-BP-01",),
        "shared",
        "Terminate TLS, filter network traffic and run any WAF in front of the service.",
    ),
    "CC6.7": Mapping(
        ("SK-BP-01", "SK-CR-01", "SK-AU-01"),
        "shared",
        "Provide TLS certificates and govern data transfers outside the service.",
    ),
    "CC6.8": Mapping(
        ("SK-VM-01",),
        "shared",
        "Scan images and hosts, and act on the findings within agreed times.",
    ),
    "CC7.1": Mapping(
        ("SK-CF-01", "SK-VM-01"),
        "shared",
        "Run the configuration and vulnerability checks on a schedule and track findings.",
    ),
    "CC7.2": Mapping(
        ("SK-AU-01", "SK-AU-02", "SK-MO-01"),
        "shared",
        "Route the security events and metrics to alerting and have them watched.",
    ),
    "CC7.3": Mapping(
        ("SK-AU-01",),
        "shared",
        "Triage security events and decide which are incidents.",
    ),
    "CC8.1": Mapping(
        ("SK-CM-01", "SK-CM-02", "SK-DOC-01"),
        "shared",
        "Require reviewed pull requests and branch protection; record deployments.",
    ),
    "A1.1": Mapping(
        ("SK-MO-01", "SK-BP-01"),
        "shared",
        "Monitor capacity and scale the infrastructure.",
    ),
    "C1.1": Mapping(
        ("SK-CR-01",),
        "shared",
        "Classify confidential information and decide which fields must be encrypted.",
    ),
    "C1.2": Mapping(
        ("SK-CR-02",),
        "shared",
        "Set the retention schedule and run the disposals it requires.",
    ),
    "PI1.1": Mapping(
        ("SK-PI-01",),
        "shared",
        "Communicate the processing specifications to users and customers.",
    ),
    "PI1.2": Mapping(("SK-PI-01",), "service-provided", "None beyond reviewing the schemas."),
    "PI1.3": Mapping(
        ("SK-AU-01",),
        "shared",
        "Monitor processing errors and jobs outside the request path.",
    ),
    "PI1.4": Mapping(
        ("SK-PI-01", "SK-AC-01"),
        "shared",
        "Confirm outputs reach the intended recipients outside the API.",
    ),
    "PI1.5": Mapping(
        ("SK-CM-01", "SK-AU-02"),
        "shared",
        "Back up the database and test restores.",
    ),
    "P3.1": Mapping(
        ("SK-CR-01",),
        "shared",
        "Decide which personal information is collected and why (minimisation).",
    ),
    "P4.3": Mapping(
        ("SK-CR-02",),
        "shared",
        "Decide when personal information must be disposed of and trigger it.",
    ),
    "P6.2": Mapping(
        ("SK-AU-01",),
        "shared",
        "Record disclosures that happen outside the service.",
    ),
}

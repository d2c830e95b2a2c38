"""Evidence is introspected from the app, never typed in: change the app, the evidence follows.

Each generation uses a fresh app object (``collect()`` runs its lifespan once).
Encrypted models are global to the process, so in-process checks look for
their own model; exact "no such column" statements run in a subprocess.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

from fastapi import FastAPI
from tests.controls.controls_helpers import (
    assert_complete,
    build_app,
    cli_env,
    evidence,
    generate,
    md_control_statuses,
    requirements,
    run_python,
    shown,
)
from tests.controls.controls_models import CtlBase

import soc2kit
from soc2kit.controls.model import Report


def control_status(report: Report, control_id: str) -> str:
    return next(c.status for c in report.controls if c.control.id == control_id)


def criterion(report: Report, criterion_id: str) -> tuple[str, list[str]]:
    row = next(r for r in report.criteria if r.criterion.id == criterion_id)
    return row.status, [c.control.id for c in row.controls]


def test_an_undeclared_route_fails_the_route_evidence(
    ctl_settings: Callable[..., soc2kit.Settings], tmp_path: Path
) -> None:
    app, _ = build_app(ctl_settings())
    before, _ = generate(app, tmp_path / "before")
    routes = evidence(tmp_path / "before", "routes")
    assert routes["result"] == "pass" and routes["facts"]["undeclared"] == 0
    assert control_status(before, "SK-AC-01") == "implemented"

    def declare(app: FastAPI, kit: soc2kit.Kit) -> None:
        @app.post("/ledger/bulk-export")  # neither require() nor public()
        def bulk_export() -> dict[str, str]:
            return {}

    app, _ = build_app(ctl_settings(), declare)
    after, _ = generate(app, tmp_path / "after")
    routes = evidence(tmp_path / "after", "routes")
    assert routes["result"] == "fail"
    assert routes["facts"]["undeclared"] == 1
    assert {"methods": ["POST"], "path": "/ledger/bulk-export", "kind": "http"}.items() <= next(
        r for r in routes["facts"]["routes"] if r["path"] == "/ledger/bulk-export"
    ).items()
    assert "1 undeclared" in routes["summary"]
    assert control_status(after, "SK-AC-01") == "implemented-with-findings"
    md = (tmp_path / "after" / "controls.md").read_text("utf-8")
    assert md_control_statuses(md)["SK-AC-01"] == "implemented, with findings"
    assert "| POST /ledger/bulk-export | UNDECLARED |" in md
    oscal = json.loads((tmp_path / "after" / "component-definition.json").read_text("utf-8"))
    (resource,) = [
        r
        for r in oscal["component-definition"]["back-matter"]["resources"]
        if r["rlinks"][0]["href"] == "evidence/routes.json"
    ]
    assert {"name": "evidence-result", "ns": "urn:soc2kit:oscal", "value": "fail"} in (
        resource["props"]
    )


def test_a_permission_grant_appears_in_the_access_evidence(
    ctl_settings: Callable[..., soc2kit.Settings], tmp_path: Path
) -> None:
    app, _ = build_app(ctl_settings())
    generate(app, tmp_path / "before")
    grants = evidence(tmp_path / "before", "access")["facts"]["grants"]
    assert not any(g["role"] == "auditor" for g in grants)

    app, kit = build_app(ctl_settings())
    kit.policy.grant("auditor", "ledger", "export", reason="quarterly review")
    kit.policy.grant("auditor", "ledger", "read", tenant="acme")
    kit.policy.declare_conflict("auditor", "clerk", reason="who audits may not book")
    generate(app, tmp_path / "after")
    access = evidence(tmp_path / "after", "access")
    assert {"role": "auditor", "resource": "ledger", "action": "export", "tenant": "*"} in (
        access["facts"]["grants"]
    )
    assert {"role": "auditor", "resource": "ledger", "action": "read", "tenant": "acme"} in (
        access["facts"]["grants"]
    )
    assert access["facts"]["separation_of_duties"] == [["auditor", "clerk"]]
    assert "auditor" in access["facts"]["roles"]
    md = (tmp_path / "after" / "controls.md").read_text("utf-8")
    assert "| grant to auditor | ledger:export |" in md
    assert "| grant to auditor | ledger:read (tenant acme) |" in md
    assert "| conflict auditor / clerk | may not be held together |" in md


def test_http_evidence_reflects_the_configured_and_probed_values(
    ctl_settings: Callable[..., soc2kit.Settings], tmp_path: Path
) -> None:
    app, _ = build_app(ctl_settings())
    generate(app, tmp_path / "default")
    default = evidence(tmp_path / "default", "http")["facts"]
    assert default["security_headers"]["x-frame-options"] == "DENY"
    assert "referrer-policy" in default["security_headers"]
    assert default["cors_origins"] == [] and default["https_enforced"] is False
    assert "strict-transport-security" not in default["security_headers"]
    assert "plain HTTP GET" not in {p["probe"] for p in default["probes"]}

    app, _ = build_app(
        ctl_settings(
            security_headers={"X-Frame-Options": "SAMEORIGIN", "Referrer-Policy": ""},
            cors_origins=["https://app.example.com"],
            https_only=True,
            hsts_max_age=31536000,
            max_body_bytes=4096,
        )
    )
    generate(app, tmp_path / "configured")
    http = evidence(tmp_path / "configured", "http")
    facts = http["facts"]
    # Headers are what the app really answered (an in-process request), not the settings.
    assert facts["security_headers"]["x-frame-options"] == "SAMEORIGIN"
    assert "referrer-policy" not in facts["security_headers"]
    assert facts["default_headers_removed_by_configuration"] == ["referrer-policy"]
    assert facts["security_headers"]["strict-transport-security"].startswith("max-age=31536000")
    assert facts["cors_origins"] == ["https://app.example.com"]
    assert facts["https_enforced"] is True and facts["max_body_bytes"] == 4096
    probes = {p["probe"]: p for p in facts["probes"]}
    assert probes["plain HTTP GET"]["status"] == 308
    assert probes["plain HTTP POST"]["status"] == 403
    assert probes["oversized request body"]["status"] == 413
    assert probes["foreign Host header"]["status"] == 400
    assert all(p["as_expected"] for p in facts["probes"]) and facts["problems"] == []
    assert http["result"] == "pass"  # HTTPS enforced; the default (not enforced) only warns
    assert evidence(tmp_path / "default", "http")["result"] == "warn"
    md = (tmp_path / "configured" / "controls.md").read_text("utf-8")
    assert "| x-frame-options | SAMEORIGIN |" in md
    assert "| referrer-policy | REMOVED by SOC2KIT_SECURITY_HEADERS |" in md
    assert "| CORS origins | https://app.example.com |" in md
    assert "| HTTPS enforced | yes |" in md


def test_an_encrypted_model_appears_with_its_key_scope(
    ctl_settings: Callable[..., soc2kit.Settings], tmp_path: Path
) -> None:
    app, kit = build_app(ctl_settings())
    CtlBase.metadata.create_all(kit.engine)
    scope = ("confidentiality", "privacy")
    report, _ = generate(app, tmp_path / "out", scope)
    columns = {
        (c["model"], c["attribute"]): c
        for c in evidence(tmp_path / "out", "encryption")["facts"]["columns"]
    }
    assert columns["CtlPatient", "insurer_ref"]["key_scope"] == "global"
    assert columns["CtlPatient", "diagnosis"]["key_scope"] == "patient_id"
    assert columns["CtlPatient", "diagnosis"]["table"] == "ctl_patients"
    assert columns["CtlPatient", "diagnosis"]["algorithm"].startswith("AES-256-GCM")
    status = {
        c["column"]: c for c in evidence(tmp_path / "out", "encryption")["observed"]["columns"]
    }
    assert status["CtlPatient.diagnosis"]["plaintext_rows"] == 0  # its table was queried
    shredding = evidence(tmp_path / "out", "encryption-shredding")
    assert shredding["result"] == "pass"
    assert "CtlPatient.diagnosis" in shredding["facts"]["columns"]
    assert "CtlPatient.insurer_ref" not in shredding["facts"]["columns"]
    md = (tmp_path / "out" / "controls.md").read_text("utf-8")
    assert "| CtlPatient.diagnosis | String in ctl_patients.diagnosis, key scope patient_id |" in md
    assert control_status(report, "SK-CR-02") == "implemented"
    for criterion_id in ("C1.2", "P4.3"):
        assert criterion(report, criterion_id) == ("shared", ["SK-CR-02"])
    assert {"C1.2", "P4.3"} <= {r["control-id"] for r in requirements(tmp_path / "out")}


SHREDDING_SCRIPT = """
import json, sys
from pathlib import Path
from fastapi import FastAPI
import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
import soc2kit
from soc2kit.controls import collect, write
from soc2kit.crypto import Encrypted, uuid7

class Base(DeclarativeBase):
    pass

class Account(Base):
    __tablename__ = "accounts"
    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    owner: Mapped[str] = mapped_column(sa.String(64))
    iban: Mapped[str] = mapped_column(Encrypted(sa.String(64)))

def generate(name):
    settings = soc2kit.Settings()
    app = FastAPI(**settings.fastapi_docs_kwargs())
    kit = soc2kit.install(app, settings)
    Base.metadata.create_all(kit.engine)
    report = collect(app, app_ref=name, scope=("confidentiality", "privacy"))
    write(report, Path(name))

generate("global-only")

# Only now does a per-subject key scope exist in this process.
class Statement(Base):
    __tablename__ = "statements"
    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    owner: Mapped[str] = mapped_column(sa.String(64))
    body: Mapped[str] = mapped_column(Encrypted(sa.Text, key_scope="owner"))

generate("with-subject-keys")
"""


def test_shredding_is_claimed_only_with_a_subject_key_scope(tmp_path: Path) -> None:
    """Exact statements need a process whose only models are this app's: a subprocess."""
    env = cli_env(tmp_path, f"sqlite:///{tmp_path / 'app.db'}")
    result = run_python(SHREDDING_SCRIPT, cwd=tmp_path, env=env)
    assert result.returncode == 0, shown(result)

    without = tmp_path / "global-only"
    statuses = assert_complete(without, ("confidentiality", "privacy"))
    columns = evidence(without, "encryption")["facts"]["columns"]
    assert [(c["model"], c["attribute"], c["key_scope"]) for c in columns] == [
        ("Account", "iban", "global")
    ]
    shredding = evidence(without, "encryption-shredding")
    assert shredding["result"] == "not-implemented"
    assert shredding["facts"] == {"columns": []}
    md = (without / "controls.md").read_text("utf-8")
    assert md_control_statuses(md)["SK-CR-02"] == "not implemented"
    assert md_control_statuses(md)["SK-CR-01"] == "implemented"
    for criterion_id in ("C1.2", "P4.3"):  # mapped only to SK-CR-02: never claimed
        assert statuses[criterion_id] == "organization-provided"
        line = re.search(rf"^- \*\*{re.escape(criterion_id)}\*\* .*$", md, re.M)
        assert line and "SK-CR-02" in line[0] and "not implemented" in line[0]
        assert not re.search(rf"^### {re.escape(criterion_id)}:", md, re.M)
    assert statuses["C1.1"] == "shared"
    assert {r["control-id"] for r in requirements(without)}.isdisjoint({"C1.2", "P4.3"})

    with_keys = tmp_path / "with-subject-keys"
    statuses = assert_complete(with_keys, ("confidentiality", "privacy"))
    shredding = evidence(with_keys, "encryption-shredding")
    assert shredding["result"] == "pass"
    assert shredding["facts"] == {"columns": ["Statement.body"]}
    md = (with_keys / "controls.md").read_text("utf-8")
    assert md_control_statuses(md)["SK-CR-02"] == "implemented"
    for criterion_id in ("C1.2", "P4.3"):
        assert statuses[criterion_id] == "shared"
        assert re.search(rf"^### {re.escape(criterion_id)}:", md, re.M)
    assert {"C1.2", "P4.3"} <= {r["control-id"] for r in requirements(with_keys)}


def test_encryption_evidence_lists_the_service_keys_and_their_ages(
    ctl_settings: Callable[..., soc2kit.Settings], tmp_path: Path
) -> None:
    app, kit = build_app(ctl_settings())
    generate(app, tmp_path / "out")
    service_keys = kit.keys.list_keys(scope="")
    assert len(service_keys) >= 2  # the enc and bidx keys created at start-up
    observed = evidence(tmp_path / "out", "encryption")["observed"]
    subject_keys = [k for k in kit.keys.list_keys() if k.scope != ""]
    assert observed["subject_keys"] == len(subject_keys)
    assert sorted(k["key_id"] for k in observed["keys"]) == sorted(k.hex_id for k in service_keys)

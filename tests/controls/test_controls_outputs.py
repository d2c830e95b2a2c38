"""``soc2kit controls`` outputs: complete, scoped, valid OSCAL, no claims, no secrets, no loads.

The example app is generated through the real CLI (a subprocess) on SQLite and
PostgreSQL; apps built here are generated in-process, each from a fresh app.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from tests.controls.controls_helpers import (
    OPTIONAL,
    assert_complete,
    assert_no_claims,
    assert_oscal,
    assert_self_contained,
    b64url,
    build_app,
    cli_env,
    evidence,
    generate,
    md_control_statuses,
    output_files,
    requirements,
    run_cli,
    secret_forms,
    seed_history,
    shown,
)

import soc2kit
from soc2kit import db

EXAMPLE = "examples.invoices.app:app"


def test_example_app_end_to_end(
    database_url: str, ctl_settings: Callable[..., soc2kit.Settings], tmp_path: Path
) -> None:
    """The CLI on the example app: every output, 61 criteria, valid OSCAL, then --check."""
    seed_history(ctl_settings(database_url=database_url))
    env = cli_env(tmp_path, database_url)
    out = tmp_path / "docs" / "controls"
    args = ("controls", "--app", EXAMPLE, "--out", str(out))
    scope = ("confidentiality", "privacy")
    result = run_cli(*args, "--criteria", "confidentiality,privacy", cwd=tmp_path, env=env)
    assert result.returncode == 0, shown(result)
    assert result.stderr == "", shown(result)

    statuses = assert_complete(out, scope)
    assert_oscal(out)
    assert_no_claims(out)
    assert_self_contained((out / "controls.html").read_text("utf-8"))

    provided = sum(1 for s in statuses.values() if s in ("service-provided", "shared"))
    organization = sum(1 for s in statuses.values() if s == "organization-provided")
    excluded = len(OPTIONAL["availability"]) + len(OPTIONAL["processing-integrity"])
    assert (
        f": {provided} criteria provided or shared by the service, {organization} "
        f"organization-provided, {excluded} out of scope\n"
    ) in result.stdout

    # What the example's code declares, found by introspection.
    routes = {
        (method, r["path"]): r["access"]
        for r in evidence(out, "routes")["facts"]["routes"]
        for method in r["methods"]
    }
    assert routes["GET", "/invoices"] == "invoices:read"
    assert routes["POST", "/invoices"] == "invoices:create"
    assert routes["POST", "/invoices/{invoice_id}/approve"] == "invoices:approve"
    assert routes["GET", "/"] == "public: service banner for humans"
    assert evidence(out, "routes")["facts"]["undeclared"] == 0
    access = evidence(out, "access")["facts"]
    assert {(g["role"], g["resource"], g["action"]) for g in access["grants"]} == {
        ("clerk", "invoices", "read"),
        ("clerk", "invoices", "create"),
        ("manager", "invoices", "read"),
        ("manager", "invoices", "approve"),
    }
    assert access["separation_of_duties"] == [["clerk", "manager"]]
    columns = evidence(out, "encryption")["facts"]["columns"]
    assert [(c["model"], c["attribute"], c["key_scope"]) for c in columns] == [
        ("Invoice", "customer_email", "global")
    ]
    assert (
        evidence(out, "inventory")["facts"]["database"]
        == db.normalize_url(database_url).get_backend_name()
    )

    # No per-subject key: SK-CR-02 is not claimed, nor the criteria mapped only to it.
    md = (out / "controls.md").read_text("utf-8")
    assert md_control_statuses(md)["SK-CR-02"] == "not implemented"
    assert md_control_statuses(md)["SK-CR-01"] == "implemented"
    for criterion in ("C1.2", "P4.3"):
        assert statuses[criterion] == "organization-provided"
        assert re.search(rf"^- \*\*{re.escape(criterion)}\*\* .*SK-CR-02", md, re.M)
    assert statuses["C1.1"] == "shared"  # mapped to SK-CR-01, which the example implements
    assert {r["control-id"] for r in requirements(out)}.isdisjoint({"C1.2", "P4.3"})

    manifest = json.loads((out / "manifest.json").read_text("utf-8"))
    assert manifest["app"] == EXAMPLE
    on_disk = {
        name: hashlib.sha256(data).hexdigest()
        for name, data in output_files(out).items()
        if name != "manifest.json"
    }
    assert manifest["files"] == on_disk
    assert {e["file"]: e["sha256"] for e in manifest["evidence"]} == {
        k: v for k, v in on_disk.items() if k.startswith("evidence/")
    }
    for entry in manifest["evidence"]:
        assert entry["command"] and entry["collected"] == manifest["generated"]
        assert entry["result"] == evidence(out, entry["id"])["result"]

    check = run_cli(
        *args, "--criteria", "confidentiality,privacy", "--check", cwd=tmp_path, env=env
    )
    assert check.returncode == 0, shown(check)
    assert f"{out} is up to date" in check.stdout


@pytest.mark.parametrize(
    "scope",
    [(), ("availability",), ("confidentiality", "privacy"), tuple(OPTIONAL)],
    ids=["security-only", "availability", "confidentiality+privacy", "all"],
)
def test_built_app_documents_for_each_scope(
    ctl_settings: Callable[..., soc2kit.Settings], tmp_path: Path, scope: tuple[str, ...]
) -> None:
    app, _ = build_app(ctl_settings())
    report, _ = generate(app, tmp_path / "out", scope)
    statuses = assert_complete(tmp_path / "out", scope)
    assert_oscal(tmp_path / "out")
    assert {r.criterion.id: r.status for r in report.criteria} == statuses
    out_of_scope = [c for c, s in statuses.items() if s == "out-of-scope"]
    assert len(out_of_scope) == sum(len(v) for k, v in OPTIONAL.items() if k not in scope)
    props = json.loads((tmp_path / "out" / "component-definition.json").read_text("utf-8"))
    component = props["component-definition"]["components"][0]
    categories = {p["name"]: p["value"] for p in component["props"]}["trust-categories"]
    assert categories.split() == ["security", *scope]


def test_built_app_documents_on_both_databases(
    database_url: str, ctl_settings: Callable[..., soc2kit.Settings], tmp_path: Path
) -> None:
    app, kit = build_app(ctl_settings(database_url=database_url))
    kit.policy.grant("clerk", "ledger", "read")
    generate(app, tmp_path / "out", ("processing-integrity",))
    statuses = assert_complete(tmp_path / "out", ("processing-integrity",))
    assert_oscal(tmp_path / "out")
    assert_no_claims(tmp_path / "out")
    assert statuses["PI1.2"] == "service-provided"  # SK-PI-01: typed schemas, introspected
    assert evidence(tmp_path / "out", "migrations")["result"] == "pass"
    assert evidence(tmp_path / "out", "inventory")["facts"]["database"] == (
        db.normalize_url(database_url).get_backend_name()
    )


# Secrets: distinctive values, so that any leak (as given, base64 or hex) is found.
KEK = hashlib.sha256(b"ctl kek").digest()
SEED = hashlib.sha256(b"ctl audit signing seed").digest()
PEPPER = "pepper-" + hashlib.sha256(b"ctl pepper").hexdigest()
IP_KEY = "ip-hmac-" + hashlib.sha256(b"ctl ip key").hexdigest()
PSEUDONYM = "pseudonym-" + hashlib.sha256(b"ctl pseudonym").hexdigest()
JWKS = {  # a public key only (tests/test_settings.py's production settings)
    "keys": [
        {
            "kty": "EC",
            "crv": "P-256",
            "kid": "k1",
            "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
            "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0",
        }
    ]
}


def test_documents_never_claim_compliance_nor_hold_secrets(
    database_url: str, ctl_settings: Callable[..., soc2kit.Settings], tmp_path: Path
) -> None:
    """A production-like app (production itself on PostgreSQL, which production requires)."""
    production = database_url.startswith("postgresql")
    kek_spec = f"kek-ctl-1:{b64url(KEK)}"
    settings = ctl_settings(
        environment="production" if production else "test",
        database_url=database_url,
        oidc_issuer="https://id.example.com/",
        oidc_audience="api://ledger",
        jwks=JWKS,
        allowed_hosts=["api.example.com"],
        https_only=True,
        api_key_pepper=PEPPER,
        encryption_kek=kek_spec,
        audit_signing_key=b64url(SEED),
        audit_anchor_dir=tmp_path / "anchors",
        audit_client_ip="hmac",
        audit_ip_hmac_key=IP_KEY,
        tracing_enabled=True,
        tracing_pseudonym_key=PSEUDONYM,
        docs_enabled=False,
    )
    if production:
        db.upgrade(database_url)  # production never migrates on install
    app, kit = build_app(settings)
    if production:
        kit.keys.generate()  # nor creates keys: `soc2kit keys generate`
    kit.api_keys.create("batch", ["clerk"], timedelta(days=30))
    out = tmp_path / "out"
    generate(app, out, tuple(OPTIONAL))
    assert_complete(out, tuple(OPTIONAL))
    # The production guard's verdict, as introspected: only SQLite stands out of production.
    assert evidence(out, "configuration")["facts"] == {
        "environment": settings.environment,
        "problems": [] if production else ["SQLite database in production: use PostgreSQL"],
    }
    assert evidence(out, "identity")["facts"]["api_key_pepper_configured"] is True
    assert evidence(out, "audit-capture")["facts"]["client_ip"] == "hmac"

    assert_no_claims(out)
    # The words are not there at all, not only not as a claim.
    text = "\n".join(d.decode("utf-8") for d in output_files(out).values()).lower()
    assert "compliant" not in text and "certified" not in text

    secrets = (
        secret_forms(KEK)
        | secret_forms(kek_spec)
        | secret_forms(SEED)
        | secret_forms(PEPPER)
        | secret_forms(IP_KEY)
        | secret_forms(PSEUDONYM)
    )
    with kit.engine.connect() as conn:  # the data keys themselves, wrapped or not
        wrapped = conn.execute(sa.text("SELECT wrapped_key FROM soc2kit_data_keys")).scalars().all()
    secrets |= {f for w in wrapped for f in secret_forms(bytes(w))}
    for name, data in output_files(out).items():
        text = data.decode("utf-8")
        leaked = sorted(s for s in secrets if s in text)
        assert not leaked, (name, leaked)
    # The search itself finds configured values that are not secret.
    identity = (out / "evidence" / "identity.json").read_text("utf-8")
    assert "api://ledger" in identity and "https://id.example.com/" in identity


def test_html_escapes_every_value(
    ctl_settings: Callable[..., soc2kit.Settings], tmp_path: Path
) -> None:
    def declare(app: FastAPI, kit: soc2kit.Kit) -> None:
        @app.get(
            "/x<script>alert(1)</script>",
            dependencies=[soc2kit.public('<script>alert("reason")</script> & <b>co</b>')],
        )
        def xss() -> dict[str, str]:
            return {}

    app, _ = build_app(ctl_settings(), declare)
    generate(app, tmp_path / "out")
    html = (tmp_path / "out" / "controls.html").read_text("utf-8")
    assert_self_contained(html)
    assert "<script" not in html.lower() and "<b>co" not in html
    assert "GET /x&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert (
        "public: &lt;script&gt;alert(&quot;reason&quot;)&lt;/script&gt; &amp; &lt;b&gt;co" in html
    )
    # The raw values are in the evidence: they were escaped, not dropped.
    paths = [r["path"] for r in evidence(tmp_path / "out", "routes")["facts"]["routes"]]
    assert "/x<script>alert(1)</script>" in paths


@pytest.mark.parametrize(
    "injected",
    [
        "<script>alert(1)</script>",
        '<img src="https://tracker.example/p.gif">',
        '<link rel="stylesheet" href="https://cdn.example/x.css">',
        '<a href="http://elsewhere.example/">x</a>',
        "<style>@import 'https://cdn.example/x.css';</style>",
        "<style>body{background:url(https://cdn.example/bg.png)}</style>",
    ],
)
def test_the_self_containment_check_catches_every_kind_of_load(injected: str) -> None:
    page = "<!DOCTYPE html><html><head><meta content=\"default-src 'none'\"></head><body>"
    assert_self_contained(page + "<p>ok</p></body></html>")
    with pytest.raises(AssertionError):
        assert_self_contained(page + injected + "</body></html>")


def test_the_claim_check_catches_the_words(tmp_path: Path) -> None:
    (tmp_path / "controls.md").write_text("The service is SOC 2 Compliant.\n", "utf-8")
    with pytest.raises(AssertionError):
        assert_no_claims(tmp_path)
    (tmp_path / "controls.md").write_text("The organization must cover CC1.1.\n", "utf-8")
    assert_no_claims(tmp_path)

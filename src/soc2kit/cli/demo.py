"""``soc2kit demo``: bake a service from the template, document it, serve it, show how.

The demo is what a team gets from ``soc2kit new``: it is baked into a folder
(``./demo-service`` by default, replacing a previous demo), installed into this
Python, given its control documents, and served on SQLite with development
keys. The printed curl lines exercise an allowed and a denied role.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from rich.console import Console

from soc2kit.errors import ConfigurationError

MARKER = ".soc2kit-demo"
"""Left in the demo folder, so a later demo only ever replaces a previous demo."""
PROJECT_NAME = "Demo Service"
PACKAGE = "demo_service"


def curl_lines(base: str) -> list[tuple[str, str]]:
    """(explanation, command) pairs: public, unauthenticated, allowed and denied requests.

    Tokens come from the ``MEMBER`` and ``AUDITOR`` shell variables printed first.
    """
    member, auditor = '"Authorization: Bearer $MEMBER"', '"Authorization: Bearer $AUDITOR"'
    json_hdr = "-H 'Content-Type: application/json'"
    body = '\'{"full_name": "Ada Lovelace", "email": "ada@example.com"}\''
    return [
        ("public readiness probe (200)", f"curl -s {base}/readyz"),
        ("no token (401)", f"curl -s -i {base}/customers"),
        (
            "member creates a customer (201; its id is kept in $ID)",
            f"ID=$(curl -s -X POST {base}/customers -H {member} {json_hdr} -d {body} "
            "| python3 -c 'import json,sys; print(json.load(sys.stdin)[\"id\"])'); echo $ID",
        ),
        (
            "member finds it by its encrypted e-mail, through the blind index (200)",
            f"curl -s -X POST {base}/customers/search -H {member} {json_hdr} "
            '-d \'{"email": "ADA@example.com"}\'',
        ),
        ("member reads it, decrypted (200)", f"curl -s {base}/customers/$ID -H {member}"),
        (
            "member may not delete it (403)",
            f"curl -s -i -X DELETE {base}/customers/$ID -H {member}",
        ),
        ("auditor may not read customers (403)", f"curl -s -i {base}/customers -H {auditor}"),
        (
            "auditor reads the audit trail (200)",
            f'curl -s "{base}/audit/events?limit=5" -H {auditor}',
        ),
    ]


def prepare(target: Path, console: Console, *, install: bool = True) -> Path:
    """Bake (replacing a previous demo only), install, and return the service folder."""
    from soc2kit.cli.new import UsageProblem, bake

    target = target.resolve()
    if target.exists():
        if not (target / MARKER).is_file():
            raise ConfigurationError(
                f"{target} exists and is not a previous demo: remove it or pass --dir"
            )
        shutil.rmtree(target)
    try:
        bake(target, {"project_name": PROJECT_NAME}, no_input=True)
    except UsageProblem as exc:
        raise ConfigurationError(str(exc)) from None
    (target / MARKER).write_text("baked by `soc2kit demo`; replaced by the next one\n", "utf-8")
    if install:
        console.print(f"Installing {target.name} into {sys.prefix} ...", markup=False)
        done = subprocess.run(  # noqa: S603 - this interpreter's pip, fixed arguments
            # Not editable: an editable hatchling install puts the project folder on
            # sys.path, and its top-level `tests` package would shadow other projects'.
            [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", str(target)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            # Serving needs only the folder on sys.path: say so and go on.
            console.print(
                "note: pip could not install the demo service; serving it from its folder",
                markup=False,
            )
    if not (target / "docs" / "controls" / "controls.html").is_file():
        raise ConfigurationError(
            f"the control documents were not generated: run `make controls` in {target}"
        )
    return target


def load_app(target: Path) -> Any:
    """Import the baked app with the demo's own development configuration (its .env)."""
    # The demo's .env must decide (database, keys folder): set aside the caller's SOC2KIT_*.
    for name in [k for k in os.environ if k.startswith("SOC2KIT_")]:
        del os.environ[name]
    os.chdir(target)
    if str(target) not in sys.path:
        sys.path.insert(0, str(target))
    from soc2kit.cli.loader import load_object

    return load_object(f"{PACKAGE}.app:app")


def _soc2kit_command() -> str:
    """This Python's ``soc2kit`` script (``make demo`` does not put .venv/bin on PATH)."""
    script = Path(sys.executable).with_name("soc2kit")
    return shlex.quote(str(script)) if script.is_file() else "soc2kit"


def run_demo(target: Path, host: str, port: int, console: Console, *, install: bool) -> None:
    import uvicorn

    service = prepare(target, console, install=install)
    app = load_app(service)
    kit = app.state.soc2kit
    tokens = {
        "member": kit.dev_token("alice", ["member"], ttl_seconds=8 * 3600),
        "auditor": kit.dev_token("dana", ["auditor"], ttl_seconds=8 * 3600),
    }
    base = f"http://{host}:{port}"
    console.rule(f"soc2kit demo: {service.name} (baked from soc2kit's template)")
    console.print(
        f"Serving on {base} (SQLite in {service}/.soc2kit, development keys).", markup=False
    )
    console.print(
        f"Control documents: {service / 'docs' / 'controls' / 'controls.html'}", markup=False
    )
    console.print("Development tokens (valid for 8 hours), then requests to try:\n")
    for name, token in tokens.items():
        console.print(
            f"export {name.upper()}='{token}'", soft_wrap=True, highlight=False, markup=False
        )
    console.print()
    for label, command in curl_lines(base):
        console.print(f"# {label}", style="bold", markup=False)
        console.print(command, soft_wrap=True, highlight=False, markup=False)
        console.print()
    console.print("# every request above is sealed in the audit log; check it:", markup=False)
    console.print(
        f"cd {service} && {_soc2kit_command()} audit verify\n", soft_wrap=True, markup=False
    )
    console.print("Every request above is in the audit table soc2kit_audit_events. Ctrl-C stops.\n")
    uvicorn.run(app, host=host, port=port, log_level="warning")

"""``soc2kit demo``: serve the example app and print ready-to-paste curl lines."""

from __future__ import annotations

from typing import Any

from rich.console import Console

from soc2kit.errors import ConfigurationError


def curl_lines(base: str) -> list[tuple[str, str]]:
    """(explanation, command) pairs exercising public, allowed and denied routes.

    Tokens come from the ``CLERK`` and ``MANAGER`` shell variables printed first.
    """
    clerk, manager = "$CLERK", "$MANAGER"
    body = '\'{"customer_email": "ada@example.com", "amount_cents": 12500}\''
    json_hdr = "-H 'Content-Type: application/json'"
    return [
        ("public readiness probe (200)", f"curl -s {base}/readyz"),
        ("no token (401)", f"curl -s -i {base}/invoices"),
        (
            "clerk creates an invoice (201; its id is kept in $ID)",
            f'ID=$(curl -s -X POST {base}/invoices -H "Authorization: Bearer {clerk}" '
            f"{json_hdr} -d {body} | python3 -c 'import json,sys; print(json.load(sys.stdin)"
            '["id"])\'); echo $ID',
        ),
        (
            "clerk finds it by the encrypted email, through its blind index (200)",
            f'curl -s "{base}/invoices?customer_email=ADA@example.com" '
            f'-H "Authorization: Bearer {clerk}"',
        ),
        (
            "clerk may not approve (403)",
            f'curl -s -i -X POST {base}/invoices/$ID/approve -H "Authorization: Bearer {clerk}"',
        ),
        (
            "manager approves (200)",
            f'curl -s -X POST {base}/invoices/$ID/approve -H "Authorization: Bearer {manager}"',
        ),
    ]


def run_demo(app_ref: str, host: str, port: int, console: Console) -> None:
    import uvicorn

    from soc2kit.cli.loader import load_object

    try:
        target: Any = load_object(app_ref)
    except ConfigurationError as exc:
        raise ConfigurationError(
            f"{exc}; run `soc2kit demo` from a soc2kit checkout (make demo)"
        ) from None
    kit = getattr(target.state, "soc2kit", None)
    if kit is None:
        raise ConfigurationError(f"{app_ref} does not call soc2kit.install()")
    tokens = {
        "clerk": kit.dev_token("carol", ["clerk"], ttl_seconds=8 * 3600),
        "manager": kit.dev_token("mallory", ["manager"], ttl_seconds=8 * 3600),
    }
    base = f"http://{host}:{port}"
    console.rule("soc2kit demo: examples/invoices")
    console.print(f"Serving on {base} (database {kit.settings.database_url}, development keys).")
    console.print("Development tokens (valid for 8 hours), then requests to try:\n")
    for name, token in tokens.items():
        console.print(
            f"export {name.upper()}='{token}'", soft_wrap=True, highlight=False, markup=False
        )
    console.print()
    for label, command in curl_lines(base):
        console.print(f"# {label}", style="bold")
        console.print(command, soft_wrap=True, highlight=False, markup=False)
        console.print()
    console.print("Every request above is in the audit table soc2kit_audit_events. Ctrl-C stops.\n")
    uvicorn.run(target, host=host, port=port, log_level="warning")

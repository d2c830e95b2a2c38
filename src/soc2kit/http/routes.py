"""Route templates: audit records ``/invoices/{invoice_id}``, never ``/invoices/42``."""

from __future__ import annotations

from typing import Any

from starlette.routing import Mount
from starlette.types import Scope


def route_template(scope: Scope, entry_root_path: str) -> str | None:
    """The template of the route that served ``scope``, including router and mount prefixes.

    Read after the app has handled the request. FastAPI 0.165 keeps an included
    router's route object unprefixed in ``scope["route"]`` and records the
    effective (prefixed) route in its own scope entry; mounts extend
    ``root_path``. Returns None when no route matched.
    """
    route = scope.get("route")
    if route is None:
        return None
    mount_prefix = str(scope.get("root_path", ""))[len(entry_root_path) :]
    if isinstance(route, Mount):
        return mount_prefix + "/{path}"
    fastapi_scope: Any = scope.get("fastapi")
    effective = (
        fastapi_scope.get("effective_route_context") if isinstance(fastapi_scope, dict) else None
    )
    template = getattr(effective, "path_format", None) or getattr(route, "path_format", None)
    if not isinstance(template, str):
        return None
    return mount_prefix + template

"""Per-request context shared by the middleware, the auth dependencies and audit.

The middleware stores one mutable :class:`RequestContext` in a ContextVar;
dependencies that run in a worker thread get a copy of the context, so they
mutate the object (for example to attach the principal) rather than re-set the
variable, and the middleware sees the change when the response is audited.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from soc2kit.authn.principal import Principal


@dataclass(slots=True)
class RequestContext:
    request_id: str
    method: str
    client_ip: str | None
    route: str | None = None
    principal: Principal | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    scope: MutableMapping[str, Any] | None = field(default=None, repr=False)
    root_path: str = ""

    def current_route(self) -> str | None:
        """The route template, also while the handler is still running."""
        if self.route is None and self.scope is not None:
            from soc2kit.http.routes import route_template  # avoids an import cycle

            return route_template(self.scope, self.root_path)
        return self.route


_current: ContextVar[RequestContext | None] = ContextVar("soc2kit_request", default=None)


def current_request() -> RequestContext | None:
    """The context of the request being served, or None outside a request."""
    return _current.get()


def current_request_id() -> str | None:
    ctx = _current.get()
    return ctx.request_id if ctx is not None else None


def _enter(ctx: RequestContext) -> Any:
    return _current.set(ctx)


def _exit(token: Any) -> None:
    _current.reset(token)

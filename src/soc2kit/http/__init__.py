"""Secure HTTP defaults: pure ASGI middleware, JSON errors and health probes."""

from soc2kit.http.errors import ApiError
from soc2kit.http.routes import route_template

__all__ = ["ApiError", "route_template"]

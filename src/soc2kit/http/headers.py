"""Security response headers, computed once at install time.

Defaults follow the OWASP Secure Headers project for JSON APIs: nothing may be
framed, sniffed, cached when authenticated or loaded from elsewhere. The
interactive docs pages get a relaxed CSP (they load Swagger UI / ReDoc from a
CDN) only when docs are enabled.
"""

from __future__ import annotations

from soc2kit.settings import Settings

API_CSP = "default-src 'none'; frame-ancestors 'none'"
DOCS_CSP = (
    "default-src 'none'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    "img-src 'self' data: https://fastapi.tiangolo.com https://cdn.redoc.ly; "
    "font-src 'self' https://fonts.gstatic.com; connect-src 'self'; "
    "worker-src 'self' blob:; frame-ancestors 'none'"
)

HeaderList = list[tuple[bytes, bytes]]


def default_headers(settings: Settings) -> dict[str, str]:
    headers = {
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Content-Security-Policy": API_CSP,
        "Permissions-Policy": (
            "accelerometer=(), camera=(), geolocation=(), gyroscope=(), magnetometer=(), "
            "microphone=(), payment=(), usb=(), interest-cohort=()"
        ),
        "Cross-Origin-Opener-Policy": "same-origin",
        "Cross-Origin-Resource-Policy": "same-origin",
        "X-Frame-Options": "DENY",
    }
    if settings.https_required:
        headers["Strict-Transport-Security"] = f"max-age={settings.hsts_max_age}; includeSubDomains"
    return headers


def build(settings: Settings, *, docs: bool = False) -> HeaderList:
    """The header list for API responses (or docs pages), with settings overrides applied.

    An override with an empty value removes that header.
    """
    headers = default_headers(settings)
    if docs:
        headers["Content-Security-Policy"] = DOCS_CSP
    for name, value in settings.security_headers.items():
        canonical = next((k for k in headers if k.lower() == name.lower()), name)
        if value == "":
            headers.pop(canonical, None)
        else:
            headers[canonical] = value
    return [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]

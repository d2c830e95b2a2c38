"""Container liveness check (Docker HEALTHCHECK): does the server answer on its port?

In production soc2kit answers plain HTTP with a redirect to HTTPS and refuses
host names it does not serve, so the check sends the first allowed host and
counts 200 or 308 from /healthz as alive. Readiness (database, audit, policy)
is /readyz, for the load balancer.
"""

from __future__ import annotations

import http.client
import json
import os
import sys


def first_allowed_host(value: str) -> str:
    """The first host of SOC2KIT_ALLOWED_HOSTS (comma-separated or JSON), wildcards made real."""
    text = value.strip()
    hosts = json.loads(text) if text.startswith("[") else text.split(",")
    host = next((str(h).strip() for h in hosts if str(h).strip()), "localhost")
    return "health" + host[1:] if host.startswith("*.") else host


def main() -> int:
    host = first_allowed_host(os.environ.get("SOC2KIT_ALLOWED_HOSTS", "localhost"))
    connection = http.client.HTTPConnection("127.0.0.1", 8000, timeout=4)
    try:
        connection.request("GET", "/healthz", headers={"Host": host})
        status = connection.getresponse().status
    except OSError:
        return 1
    finally:
        connection.close()
    return 0 if status in (200, 308) else 1


if __name__ == "__main__":
    sys.exit(main())

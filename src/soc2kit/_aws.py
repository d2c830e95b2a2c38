"""Building boto3 clients the one safe way (the optional ``aws`` extra).

Shared by the KMS key provider and the S3 anchor store: boto3 is imported only
when needed, each client comes from a private session (boto3's default session
is not thread-safe to create), timeouts are bounded with few retries so an AWS
outage fails a request in seconds, and errors are reported by their AWS code
only (messages can echo request data).
"""

from __future__ import annotations

import importlib
import re
from typing import Any

from soc2kit.errors import ConfigurationError

_ERROR_CODE = re.compile(r"[A-Za-z][A-Za-z0-9_.]{0,99}")


def error_code(exc: BaseException) -> str:
    """The AWS error code (ClientError) or botocore's exception name, never the message."""
    response = getattr(exc, "response", None)
    code: object = None
    if isinstance(response, dict):
        error = response.get("Error")
        if isinstance(error, dict):
            code = error.get("Code")
    if code is None:
        code = type(exc).__name__
    return code if isinstance(code, str) and _ERROR_CODE.fullmatch(code) else "UnknownError"


def aws_client(
    service: str,
    *,
    what: str,
    client: Any | None,
    region_name: str | None,
    endpoint_url: str | None,
    connect_timeout: float,
    read_timeout: float,
    max_attempts: int,
) -> tuple[Any, tuple[type[Exception], ...]]:
    """``(client, botocore error types)``; ``what`` names the user in error messages."""
    if connect_timeout <= 0 or read_timeout <= 0 or max_attempts < 1:
        raise ConfigurationError(f"{what} timeouts must be positive and max_attempts >= 1")
    if client is not None and (region_name is not None or endpoint_url is not None):
        raise ConfigurationError(
            f"pass either a client for {what} or region_name/endpoint_url, not both"
        )
    try:
        # botocore is needed even with an injected client: its exceptions are mapped.
        botocore_exceptions = importlib.import_module("botocore.exceptions")
        if client is None:
            boto3 = importlib.import_module("boto3")
            botocore_config = importlib.import_module("botocore.config")
    except ImportError:
        raise ConfigurationError(
            f"{what} needs the aws extra: pip install 'soc2kit[aws]'"
        ) from None
    errors: tuple[type[Exception], ...] = (
        botocore_exceptions.BotoCoreError,
        botocore_exceptions.ClientError,
    )
    if client is None:
        config = botocore_config.Config(
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            retries={"total_max_attempts": max_attempts, "mode": "standard"},
        )
        try:
            client = boto3.session.Session().client(
                service, region_name=region_name, endpoint_url=endpoint_url, config=config
            )
        except botocore_exceptions.NoRegionError:
            raise ConfigurationError(
                f"{what} needs a region: pass region_name or set AWS_REGION"
            ) from None
        except (errors[0], errors[1], ValueError) as exc:
            raise ConfigurationError(
                f"{what} client could not be created: {error_code(exc)}"
            ) from None
    return client, errors

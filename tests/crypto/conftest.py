"""AWS KMS fixtures: moto's server on loopback, dummy credentials, fresh KMS keys.

Clients built here get their credentials and region explicitly, so boto3 never
looks for real ones (no ~/.aws, no instance metadata endpoint). Each xdist
worker starts its own server on a free port.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import soc2kit

AWS_REGION = "us-east-1"
AWS_CREDENTIALS = {
    "aws_access_key_id": "testing",
    "aws_secret_access_key": "testing",
    "aws_session_token": "testing",
}


@pytest.fixture(scope="session")
def moto_kms_endpoint() -> Iterator[str]:
    """URL of a moto server bound to 127.0.0.1 on a kernel-chosen port."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        assert host == "127.0.0.1"
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture(scope="session")
def aws_session() -> Any:
    """One boto3 session with dummy credentials (it caches the service models: fast clients)."""
    import boto3

    return boto3.session.Session(region_name=AWS_REGION, **AWS_CREDENTIALS)


@pytest.fixture
def make_kms_client(moto_kms_endpoint: str, aws_session: Any) -> Callable[..., Any]:
    """Build a KMS client for the moto server (or ``endpoint_url``), dummy credentials."""
    from botocore.config import Config

    def make(endpoint_url: str = moto_kms_endpoint, **config: Any) -> Any:
        # proxies={}: never route loopback traffic through an environment proxy.
        return aws_session.client(
            "kms",
            endpoint_url=endpoint_url,
            config=Config(
                proxies={}, retries={"total_max_attempts": 1, "mode": "standard"}, **config
            ),
        )

    return make


@pytest.fixture
def kms_admin(make_kms_client: Callable[..., Any]) -> Any:
    """A KMS client for setting keys up (create, alias, disable) outside the provider."""
    return make_kms_client()


@pytest.fixture
def make_kms_key(kms_admin: Any) -> Callable[[], dict[str, Any]]:
    """Create a fresh symmetric KMS key; returns its KeyMetadata (``KeyId``, ``Arn``, ...)."""

    def make() -> dict[str, Any]:
        metadata: dict[str, Any] = kms_admin.create_key(Description="soc2kit test KEK")[
            "KeyMetadata"
        ]
        return metadata

    return make


@pytest.fixture
def kms_key(make_kms_key: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """A fresh symmetric KMS key for this test."""
    return make_kms_key()


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Dummy AWS environment for code that builds its own boto3 client from the environment.

    Only for tests of the provider's own client construction: everything else passes
    credentials explicitly.
    """
    for name in (
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_ROLE_ARN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
    ):
        monkeypatch.delenv(name, raising=False)
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", AWS_CREDENTIALS["aws_access_key_id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", AWS_CREDENTIALS["aws_secret_access_key"])
    monkeypatch.setenv("AWS_SESSION_TOKEN", AWS_CREDENTIALS["aws_session_token"])
    monkeypatch.setenv("AWS_DEFAULT_REGION", AWS_REGION)
    monkeypatch.setenv("AWS_REGION", AWS_REGION)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))


# kits with the field-encryption test models ----------------------------------------------


def _fle_kit(settings: soc2kit.Settings, *, load: bool = True) -> soc2kit.Kit:
    from fastapi import FastAPI
    from tests.crypto.fle_models import Base
    from tests.crypto.fle_models_extra import ExtraBase

    kit = soc2kit.install(FastAPI(), settings)
    Base.metadata.create_all(kit.engine)
    ExtraBase.metadata.create_all(kit.engine)
    if load:
        kit.keys.load(create=True)
    return kit


@pytest.fixture
def make_kit(
    make_settings: Callable[..., soc2kit.Settings], database_url: str
) -> Iterator[Callable[..., soc2kit.Kit]]:
    """Kits on this test's database (same data_dir, so the same development KEK by default)."""
    kits: list[soc2kit.Kit] = []

    def factory(*, load: bool = True, **overrides: Any) -> soc2kit.Kit:
        kit = _fle_kit(make_settings(database_url=database_url, **overrides), load=load)
        kits.append(kit)
        return kit

    yield factory
    for kit in reversed(kits):
        kit.shutdown()


@pytest.fixture
def kit(make_kit: Callable[..., soc2kit.Kit]) -> soc2kit.Kit:
    return make_kit()


@pytest.fixture
def sqlite_kit(
    make_settings: Callable[..., soc2kit.Settings], sqlite_url: str
) -> Iterator[soc2kit.Kit]:
    kit = _fle_kit(make_settings(database_url=sqlite_url))
    yield kit
    kit.shutdown()

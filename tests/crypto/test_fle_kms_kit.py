"""A whole kit on AWS KMS (moto's server on 127.0.0.1): wrapped keys, rows, KEK rotation."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from tests.crypto.fle_models import Base, Customer

import soc2kit
from soc2kit.crypto import KeyUnavailableError


def _kit(make_settings: Callable[..., soc2kit.Settings], url: str, key: str, endpoint: str) -> Any:
    settings = make_settings(
        database_url=url,
        encryption_kms_key_id=key,
        encryption_kms_endpoint_url=endpoint,
        encryption_kms_region="us-east-1",
    )
    kit = soc2kit.install(FastAPI(), settings)
    Base.metadata.create_all(kit.engine)
    kit.keys.load(create=True)
    return kit


@pytest.mark.usefixtures("aws_env")
def test_a_kit_on_kms_round_trips_and_rewraps_to_a_new_kms_key(
    make_settings: Callable[..., soc2kit.Settings],
    database_url: str,
    moto_kms_endpoint: str,
    make_kms_key: Callable[[], dict[str, Any]],
) -> None:
    first, second = make_kms_key(), make_kms_key()
    kit = _kit(make_settings, database_url, first["KeyId"], moto_kms_endpoint)
    try:
        with kit.sessions() as session:
            customer = Customer(email="kms@example.com", birth_date=date(1980, 5, 6))
            session.add(customer)
            session.commit()
            customer_id = customer.id
        assert {k.kek_ref for k in kit.keys.list_keys()} == {f"aws-kms:{first['Arn']}"}
        with kit.engine.connect() as conn:
            wrapped = conn.execute(sa.text("SELECT wrapped_key FROM soc2kit_data_keys")).scalars()
            assert all(b"kms@example.com" not in bytes(w) for w in wrapped)
    finally:
        kit.shutdown()

    # KEK rotation: a kit on the second KMS key re-wraps every data key inside KMS.
    kit = _kit(make_settings, database_url, second["KeyId"], moto_kms_endpoint)
    try:
        assert kit.keys.rewrap_all(actor="test") == 2
        assert {k.kek_ref for k in kit.keys.list_keys()} == {f"aws-kms:{second['Arn']}"}
    finally:
        kit.shutdown()

    # Only the second key is accepted now, and the rows read as before.
    settings = make_settings(
        database_url=database_url,
        encryption_kms_key_id=second["KeyId"],
        encryption_kms_endpoint_url=moto_kms_endpoint,
        encryption_kms_region="us-east-1",
    )
    kit = soc2kit.install(FastAPI(), settings)
    try:
        kit.keys.load(create=False)
        with kit.sessions() as session:
            assert session.get(Customer, customer_id).email == "kms@example.com"  # type: ignore[union-attr]
    finally:
        kit.shutdown()


@pytest.mark.usefixtures("aws_env")
def test_an_unreachable_kms_refuses_to_load_keys(
    make_settings: Callable[..., soc2kit.Settings],
    sqlite_url: str,
    moto_kms_endpoint: str,
    make_kms_key: Callable[[], dict[str, Any]],
) -> None:
    key = make_kms_key()
    kit = _kit(make_settings, sqlite_url, key["KeyId"], moto_kms_endpoint)
    kit.shutdown()
    closed = "http://127.0.0.1:9"  # discard port: nothing listens
    settings = make_settings(
        database_url=sqlite_url,
        encryption_kms_key_id=key["KeyId"],
        encryption_kms_endpoint_url=closed,
        encryption_kms_region="us-east-1",
    )
    kit = soc2kit.install(FastAPI(), settings)
    try:
        with pytest.raises(KeyUnavailableError) as info:
            kit.keys.load(create=False)
        assert "AWS KMS Decrypt failed" in str(info.value)
    finally:
        kit.shutdown()

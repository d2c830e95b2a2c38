{%- set multi = cookiecutter.tenancy == "multi" -%}
"""{{ cookiecutter.project_name }}: the HTTP API.

``soc2kit.install()`` adds the controls: trusted hosts, HTTPS and security
headers, rate and body limits, token authentication, a deny-by-default gate on
every route, and a sealed audit event for every request. Each route declares
who may call it, ``require(resource, action)`` (granted to roles in
policy/policy.csv) or ``public(reason)``; ``soc2kit routes`` fails CI on a
route that does neither.
{%- if multi %}

Multi-tenant: the caller's tenant comes from its credential (the token's
``tenant`` claim). Lists are filtered with ``kit.tenant_filter`` and single
objects checked with ``kit.authorize``, so another tenant's customer answers
404, exactly like a missing one.
{%- endif %}
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated

import soc2kit
import sqlalchemy as sa
from fastapi import FastAPI, HTTPException, Query, Response
from pydantic import BaseModel, ConfigDict, EmailStr, Field, field_validator
from soc2kit import Principal, public, require
from soc2kit.crypto import blind_index_of
from sqlalchemy.orm import load_only

from {{ cookiecutter.package_name }} import database, policy
from {{ cookiecutter.package_name }}.config import ServiceSettings
from {{ cookiecutter.package_name }}.models import Customer

settings = soc2kit.Settings()  # SOC2KIT_* variables and .env: see .env.example
service_settings = ServiceSettings()


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    # Runs after soc2kit's start-up: its tables checked, keys loaded, policy current.
    database.ensure_current(kit.engine, apply=settings.migrate_on_install)
    policy.apply(kit, service_settings.policy_file)
    yield


docs_urls = settings.fastapi_docs_kwargs()  # no API docs in production
app = FastAPI(
    title="{{ cookiecutter.project_name }}",
    description="{{ cookiecutter.description }}",
    lifespan=lifespan,
    docs_url=docs_urls["docs_url"],
    redoc_url=docs_urls["redoc_url"],
    openapi_url=docs_urls["openapi_url"],
)
kit = soc2kit.install(app, settings)
app.include_router(kit.health_router())  # /healthz and /readyz, both public
app.include_router(kit.audit_router())  # /audit/...: the auditor's read API (audit:read)


class CustomerIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    full_name: Annotated[str, Field(min_length=1, max_length=200)]
    email: EmailStr


class CustomerSearch(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    email: EmailStr


class CustomerOut(BaseModel):
    """What lists show: no personal data."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    created_by: str
    created_at: datetime

    @field_validator("created_at")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        # Stored in UTC; SQLite hands datetimes back without their zone.
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


class CustomerDetail(CustomerOut):
    """One customer, its personal fields decrypted because this response asks for them."""

    full_name: str
    email: str


SUMMARY = load_only(Customer.id, Customer.created_by, Customer.created_at)
"""What lists load: encrypted values are never read (nor decrypted) where they are not shown."""

{%- if multi %}


def _tenant_of(principal: Principal, action: str) -> str:
    """The caller's tenant. A credential without one is refused (and audited), never defaulted."""
    if principal.tenant is None:
        kit.audit.record(
            "authz.denied",
            action=action,
            outcome="denied",
            actor=principal,
            resource_type="customers",
            reason="no tenant in the credential",
        )
        raise HTTPException(403, "a tenant is required")
    return principal.tenant
{%- endif %}


@app.get("/", dependencies=[public("service banner for humans")])
def index() -> dict[str, str]:
    return {"service": "{{ cookiecutter.project_slug }}"}


@app.get("/customers")
def list_customers(
    principal: Principal = require("customers", "read"),
    limit: Annotated[int, Query(ge=1)] = 50,
) -> list[CustomerOut]:
    statement = sa.select(Customer).options(SUMMARY).order_by(Customer.id)
{%- if multi %}
    statement = kit.tenant_filter(statement, Customer.tenant_id, principal)
{%- endif %}
    statement = statement.limit(min(limit, service_settings.max_page_size))
    with kit.sessions() as session:
        return [CustomerOut.model_validate(customer) for customer in session.scalars(statement)]


@app.post("/customers/search")
def search_customers(
    body: CustomerSearch, principal: Principal = require("customers", "read")
) -> list[CustomerOut]:
    """Exact, case-insensitive match on the encrypted e-mail address, through its blind index.

    A POST, so that the address never appears in a URL or an access log.
    """
    statement = sa.select(Customer).options(SUMMARY).order_by(Customer.id)
{%- if multi %}
    statement = kit.tenant_filter(statement, Customer.tenant_id, principal)
    lookup = blind_index_of(Customer.email, str(body.email), tenant=principal.tenant)
{%- else %}
    lookup = blind_index_of(Customer.email, str(body.email))
{%- endif %}
    statement = statement.where(Customer.email_bidx == lookup).limit(service_settings.max_page_size)
    with kit.sessions() as session:
        return [CustomerOut.model_validate(customer) for customer in session.scalars(statement)]


@app.post("/customers", status_code=201)
def create_customer(
    body: CustomerIn, principal: Principal = require("customers", "create")
) -> CustomerOut:
    customer = Customer(
{%- if multi %}
        tenant_id=_tenant_of(principal, "create"),
{%- endif %}
        full_name=body.full_name,
        email=str(body.email),
        created_by=principal.subject,
        created_at=datetime.now(UTC),
    )
    # The flush encrypts the personal fields and records data.create in the same
    # transaction (personal fields as "changed", never their values).
    with kit.sessions() as session, session.begin():
        session.add(customer)
    return CustomerOut.model_validate(customer)


@app.get("/customers/{customer_id}")
def read_customer(
    customer_id: uuid.UUID, principal: Principal = require("customers", "read")
) -> CustomerDetail:
    with kit.sessions() as session:
        customer = session.get(Customer, customer_id)
        if customer is None:
            raise HTTPException(404)
{%- if multi %}
        kit.authorize(principal, "customers", "read", obj=customer)  # another tenant's: 404
{%- endif %}
        return CustomerDetail.model_validate(customer)


@app.delete("/customers/{customer_id}", status_code=204)
def erase_customer(
    customer_id: uuid.UUID, principal: Principal = require("customers", "delete")
) -> Response:
    with kit.sessions() as session, session.begin():
        customer = session.get(Customer, customer_id)
        if customer is None:
            raise HTTPException(404)
{%- if multi %}
        kit.authorize(principal, "customers", "delete", obj=customer)  # another tenant's: 404
{%- endif %}
        session.delete(customer)
        session.flush()  # soc2kit records data.delete here, in this transaction
        # The business event, in the same transaction: both commit or neither does.
        kit.audit.record_in(
            session.connection(),
            "customer.erased",
            action="delete",
            outcome="success",
            resource_type="customer",
            resource_id=str(customer_id),
            reason="erasure requested through the API",
        )
    return Response(status_code=204)

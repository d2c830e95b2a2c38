"""Example service: a small invoices API protected by soc2kit.

Run it with ``make demo``. Roles: a ``clerk`` records and reads invoices, a
``manager`` reads and approves them. The two roles are declared in conflict,
so soc2kit refuses to assign both to one person (segregation of duties), and
the approval route also refuses an invoice's own creator.
``customer_email`` is personal data: it is stored encrypted (AES-256-GCM bound
to its row), searchable by equality through a blind index, and shown only by
the single-invoice route whose response schema asks for it.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated

import sqlalchemy as sa
from fastapi import FastAPI, HTTPException, Query
from pydantic import BaseModel, EmailStr, Field
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

import soc2kit
from soc2kit import Principal, public, require
from soc2kit.crypto import BlindIndex, Encrypted, uuid7


class Base(DeclarativeBase):
    pass


class Invoice(Base):
    __tablename__ = "invoices"

    # Client-generated, so each encrypted value can be bound to its row before INSERT.
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid7)
    customer_email: Mapped[str] = mapped_column(Encrypted(sa.String(320)))  # PII
    customer_email_bidx: Mapped[bytes] = mapped_column(
        BlindIndex("customer_email", normalize="casefold_strip"), index=True
    )
    amount_cents: Mapped[int]
    status: Mapped[str] = mapped_column(sa.String(20), default="draft")
    created_by: Mapped[str] = mapped_column(sa.String(256))
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))


class InvoiceIn(BaseModel):
    customer_email: EmailStr
    amount_cents: Annotated[int, Field(gt=0, le=100_000_000)]


class InvoiceOut(BaseModel):
    id: uuid.UUID
    amount_cents: int
    status: str
    created_by: str


class InvoiceDetail(InvoiceOut):
    customer_email: str  # decrypted only because this schema asks for it


settings = soc2kit.Settings()
app = FastAPI(title="Invoices (soc2kit example)", **settings.fastapi_docs_kwargs())
kit = soc2kit.install(app, settings)
app.include_router(kit.health_router())
Base.metadata.create_all(kit.engine)

kit.policy.grant("clerk", "invoices", "read")
kit.policy.grant("clerk", "invoices", "create")
kit.policy.grant("manager", "invoices", "read")
kit.policy.grant("manager", "invoices", "approve")
kit.policy.declare_conflict("clerk", "manager", reason="who records an invoice may not approve it")


def _out(invoice: Invoice) -> InvoiceOut:
    return InvoiceOut(
        id=invoice.id,
        amount_cents=invoice.amount_cents,
        status=invoice.status,
        created_by=invoice.created_by,
    )


@app.get("/", dependencies=[public("service banner for humans")])
def index() -> dict[str, str]:
    return {"service": "invoices", "docs": "/docs" if settings.docs_active else "disabled"}


@app.get("/invoices")
def list_invoices(
    principal: Principal = require("invoices", "read"),
    customer_email: Annotated[EmailStr | None, Query(description="exact match")] = None,
) -> list[InvoiceOut]:
    query = sa.select(Invoice).order_by(Invoice.id).limit(100)
    if customer_email is not None:
        # Equality search on an encrypted column goes through its blind index.
        query = query.where(Invoice.customer_email.bidx_eq(customer_email))
    with Session(kit.engine) as session:
        return [_out(i) for i in session.scalars(query)]


@app.get("/invoices/{invoice_id}")
def read_invoice(
    invoice_id: uuid.UUID, principal: Principal = require("invoices", "read")
) -> InvoiceDetail:
    with Session(kit.engine) as session:
        invoice = session.get(Invoice, invoice_id)
        if invoice is None:
            raise HTTPException(404)
        return InvoiceDetail(**_out(invoice).model_dump(), customer_email=invoice.customer_email)


@app.post("/invoices", status_code=201)
def create_invoice(
    body: InvoiceIn, principal: Principal = require("invoices", "create")
) -> InvoiceOut:
    with Session(kit.engine) as session, session.begin():
        invoice = Invoice(
            customer_email=body.customer_email,
            amount_cents=body.amount_cents,
            created_by=principal.subject,
            created_at=datetime.now(UTC),
        )
        session.add(invoice)
        session.flush()
        # In the invoice's own transaction: both commit, or neither does.
        kit.audit.record_in(
            session.connection(),
            "invoice.created",
            action="create",
            outcome="success",
            resource_type="invoice",
            resource_id=invoice.id,
            changes={"amount_cents": body.amount_cents, "customer_email": "[changed]"},
        )
        return _out(invoice)


@app.post("/invoices/{invoice_id}/approve")
def approve_invoice(
    invoice_id: uuid.UUID, principal: Principal = require("invoices", "approve")
) -> InvoiceOut:
    with Session(kit.engine) as session, session.begin():
        invoice = session.get(Invoice, invoice_id)
        if invoice is None:
            raise HTTPException(404)
        if invoice.created_by == principal.subject:
            # Not in the transaction: the refusal rolls it back, the record must stay.
            kit.audit.record(
                "invoice.approved",
                action="approve",
                outcome="denied",
                resource_type="invoice",
                resource_id=invoice_id,
                reason="creator may not approve",
            )
            raise HTTPException(403, "the creator of an invoice may not approve it")
        invoice.status = "approved"
        kit.audit.record_in(
            session.connection(),
            "invoice.approved",
            action="approve",
            outcome="success",
            resource_type="invoice",
            resource_id=invoice_id,
            changes={"status": {"old": "draft", "new": "approved"}},
        )
        return _out(invoice)

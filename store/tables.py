"""The tables: leads and their source identities, activities, watermarks and the quarantine."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Column, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from store.types import UTCDateTime


def utc_column(**kwargs) -> Column:
    return Column(UTCDateTime(), **kwargs)


class Lead(SQLModel, table=True):
    """One person, whichever tools know them; identity is the normalized e-mail first."""

    __tablename__ = "lead"

    id: int | None = Field(default=None, sa_column=Column(Integer, primary_key=True, autoincrement=True))
    email: str | None = Field(default=None, sa_column=Column(String(320), unique=True, nullable=True))
    crm_id: str | None = Field(default=None, sa_column=Column(String(18), unique=True, nullable=True))
    first_name: str | None = Field(default=None, sa_column=Column(String(200), nullable=True))
    last_name: str | None = Field(default=None, sa_column=Column(String(200), nullable=True))
    company: str | None = Field(default=None, sa_column=Column(String(300), nullable=True))
    title: str | None = Field(default=None, sa_column=Column(String(300), nullable=True))
    industry: str | None = Field(default=None, sa_column=Column(String(200), nullable=True))
    company_size: int | None = Field(default=None, sa_column=Column(Integer, nullable=True))
    country: str | None = Field(default=None, sa_column=Column(String(100), nullable=True))
    product_interest: str | None = Field(default=None, sa_column=Column(String(200), nullable=True))
    lead_source_channel: str | None = Field(default=None, sa_column=Column(String(200), nullable=True))
    merged_into_id: int | None = Field(default=None, sa_column=Column(Integer, ForeignKey("lead.id"), nullable=True))
    created_at: datetime = Field(sa_column=utc_column(nullable=False))
    updated_at: datetime = Field(sa_column=utc_column(nullable=False))


class LeadContact(SQLModel, table=True):
    """A lead's id in one source (a Marketo lead id, a HubSpot contact id, ...)."""

    __tablename__ = "lead_contact"

    source: str = Field(sa_column=Column(String(40), primary_key=True))
    contact_id: str = Field(sa_column=Column(String(100), primary_key=True))
    lead_id: int = Field(sa_column=Column(Integer, ForeignKey("lead.id"), nullable=False, index=True))


class Activity(SQLModel, table=True):
    """One marketing activity, exactly once per (source, external_id)."""

    __tablename__ = "activity"
    __table_args__ = (
        UniqueConstraint("source", "external_id", name="uq_activity_source_external_id"),
        Index("ix_activity_lead_occurred", "lead_id", "occurred_at"),
    )

    id: int | None = Field(
        default=None,
        sa_column=Column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    )
    source: str = Field(sa_column=Column(String(40), nullable=False))
    external_id: str = Field(sa_column=Column(String(200), nullable=False))
    lead_id: int = Field(sa_column=Column(Integer, ForeignKey("lead.id"), nullable=False))
    type: str = Field(sa_column=Column(String(40), nullable=False))
    asset: str | None = Field(default=None, sa_column=Column(String(500), nullable=True))
    campaign: str | None = Field(default=None, sa_column=Column(String(500), nullable=True))
    occurred_at: datetime = Field(sa_column=utc_column(nullable=False))
    ingested_at: datetime = Field(sa_column=utc_column(nullable=False))
    raw: str = Field(sa_column=Column(Text, nullable=False))


class SourceWatermark(SQLModel, table=True):
    """How far each source has been read: the newest activity time whose batch is committed."""

    __tablename__ = "source_watermark"

    source: str = Field(sa_column=Column(String(40), primary_key=True))
    watermark: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    updated_at: datetime = Field(sa_column=utc_column(nullable=False))
    run_id: str | None = Field(default=None, sa_column=Column(String(64), nullable=True))


class Quarantine(SQLModel, table=True):
    """A rejected record with its reason and raw payload; `digest` keeps a re-read record from landing twice."""

    __tablename__ = "quarantine"
    __table_args__ = (UniqueConstraint("source", "digest", name="uq_quarantine_source_digest"),)

    id: int | None = Field(default=None, sa_column=Column(Integer, primary_key=True, autoincrement=True))
    source: str = Field(sa_column=Column(String(40), nullable=False))
    external_id: str | None = Field(default=None, sa_column=Column(String(200), nullable=True))
    reason: str = Field(sa_column=Column(Text, nullable=False))
    raw: str = Field(sa_column=Column(Text, nullable=False))
    digest: str = Field(sa_column=Column(String(64), nullable=False))
    quarantined_at: datetime = Field(sa_column=utc_column(nullable=False, index=True))
    run_id: str | None = Field(default=None, sa_column=Column(String(64), nullable=True))

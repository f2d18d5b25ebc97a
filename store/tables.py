"""The tables: leads and their source identities, activities, watermarks and the quarantine."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger, Boolean, Column, Float, ForeignKey, Index, Integer, LargeBinary, String, Text, UniqueConstraint, text,
)
from sqlmodel import Field, SQLModel

from store.types import UTCDateTime


def utc_column(**kwargs) -> Column:
    return Column(UTCDateTime(), **kwargs)


def unbounded_text(declared: int):
    """Text of any length (a URL with its tracking parameters, a long company name must not be lost). SQLite
    keeps the VARCHAR(declared) its tables were made with: it enforces no length, and changing a declared type
    there means copying the table (migration 0015)."""
    return Text().with_variant(String(declared), "sqlite")


class Lead(SQLModel, table=True):
    """One person, whichever tools know them; identity is the normalized e-mail first."""

    __tablename__ = "lead"

    id: int | None = Field(default=None, sa_column=Column(Integer, primary_key=True, autoincrement=True))
    email: str | None = Field(default=None, sa_column=Column(String(320), unique=True, nullable=True))
    crm_id: str | None = Field(default=None, sa_column=Column(String(18), unique=True, nullable=True))
    first_name: str | None = Field(default=None, sa_column=Column(unbounded_text(200), nullable=True))
    last_name: str | None = Field(default=None, sa_column=Column(unbounded_text(200), nullable=True))
    company: str | None = Field(default=None, sa_column=Column(unbounded_text(300), nullable=True))
    title: str | None = Field(default=None, sa_column=Column(unbounded_text(300), nullable=True))
    industry: str | None = Field(default=None, sa_column=Column(unbounded_text(200), nullable=True))
    company_size: int | None = Field(default=None, sa_column=Column(Integer, nullable=True))
    country: str | None = Field(default=None, sa_column=Column(unbounded_text(100), nullable=True))
    product_interest: str | None = Field(default=None, sa_column=Column(unbounded_text(200), nullable=True))
    lead_source_channel: str | None = Field(default=None, sa_column=Column(unbounded_text(200), nullable=True))
    merged_into_id: int | None = Field(default=None, sa_column=Column(Integer, ForeignKey("lead.id"), nullable=True, index=True))
    created_at: datetime = Field(sa_column=utc_column(nullable=False))
    updated_at: datetime = Field(sa_column=utc_column(nullable=False))


class LeadContact(SQLModel, table=True):
    """A lead's id in one source (a Marketo lead id, a HubSpot contact id, ...)."""

    __tablename__ = "lead_contact"

    source: str = Field(sa_column=Column(String(40), primary_key=True))
    contact_id: str = Field(sa_column=Column(String(200).with_variant(String(100), "sqlite"), primary_key=True))
    lead_id: int = Field(sa_column=Column(Integer, ForeignKey("lead.id"), nullable=False, index=True))


class Activity(SQLModel, table=True):
    """One marketing activity, exactly once per (source, external_id)."""

    __tablename__ = "activity"
    __table_args__ = (
        UniqueConstraint("source", "external_id", name="uq_activity_source_external_id"),
        Index("ix_activity_lead_type_occurred", "lead_id", "type", "occurred_at"),
    )

    id: int | None = Field(
        default=None,
        sa_column=Column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    )
    source: str = Field(sa_column=Column(String(40), nullable=False))
    external_id: str = Field(sa_column=Column(String(200), nullable=False))
    # No foreign key: the batch that stores an activity sets its lead in the same transaction, and leads are
    # never deleted; a per-row check cost a fifth of the database's work in a backfill (migration 0008).
    lead_id: int = Field(sa_column=Column(Integer, nullable=False))
    type: str = Field(sa_column=Column(String(40), nullable=False))
    asset: str | None = Field(default=None, sa_column=Column(unbounded_text(500), nullable=True))
    asset_key: str | None = Field(default=None, sa_column=Column(unbounded_text(500), nullable=True))  # domain.activity.asset_key
    campaign: str | None = Field(default=None, sa_column=Column(unbounded_text(500), nullable=True))
    occurred_at: datetime = Field(sa_column=utc_column(nullable=False))
    ingested_at: datetime = Field(sa_column=utc_column(nullable=False))
    raw: str = Field(sa_column=Column(Text, nullable=False))


class SourceWatermark(SQLModel, table=True):
    """How far each source has been read: the newest activity time whose batch is committed (moved forward at
    `updated_at`); and how its reads end: the last read that finished (`read_at`, nothing new counts) and the
    last that failed, with the error, for the health check."""

    __tablename__ = "source_watermark"

    source: str = Field(sa_column=Column(String(40), primary_key=True))
    watermark: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    updated_at: datetime = Field(sa_column=utc_column(nullable=False))
    run_id: str | None = Field(default=None, sa_column=Column(String(64), nullable=True))
    read_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    failed_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    error: str | None = Field(default=None, sa_column=Column(String(500), nullable=True))


class SourceFile(SQLModel, table=True):
    """A file a file-based source has read to its end, every line committed: an unchanged file (same size and
    modification time) is not read again."""

    __tablename__ = "source_file"

    source: str = Field(sa_column=Column(String(40), primary_key=True))
    path: str = Field(sa_column=Column(String(1000), primary_key=True))
    size: int = Field(sa_column=Column(BigInteger, nullable=False))
    mtime_ns: int = Field(sa_column=Column(BigInteger, nullable=False))
    lines: int = Field(sa_column=Column(Integer, nullable=False))
    read_at: datetime = Field(sa_column=utc_column(nullable=False))
    run_id: str | None = Field(default=None, sa_column=Column(String(64), nullable=True))


class Quarantine(SQLModel, table=True):
    """A rejected record with its reason and raw payload; `digest` keeps a re-read record from landing twice.
    `raw` is the payload as text; where text cannot hold it exactly (bytes that are not UTF-8, a NUL, a payload
    cut at the cap) `raw` shows it with escapes and `raw_bytes` keeps the bytes. `raw_size` is the payload's
    size in bytes as it came, before any cap."""

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
    raw_bytes: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    raw_size: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))


class LeadDirty(SQLModel, table=True):
    """Leads whose activities or fields changed since they were last scored; `marked_at` tells a lead marked
    again while being scored from one that was not."""

    __tablename__ = "lead_dirty"

    lead_id: int = Field(sa_column=Column(Integer, ForeignKey("lead.id"), primary_key=True))
    marked_at: datetime = Field(sa_column=utc_column(nullable=False))


class RulebookVersion(SQLModel, table=True):
    """Every rulebook that scored leads, by content digest, with the rules as they were."""

    __tablename__ = "rulebook_version"

    id: int | None = Field(default=None, sa_column=Column(Integer, primary_key=True, autoincrement=True))
    digest: str = Field(sa_column=Column(String(64), nullable=False, unique=True))
    created_at: datetime = Field(sa_column=utc_column(nullable=False))
    reason: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    rules: str = Field(sa_column=Column(Text, nullable=False))


class ScoreRule(SQLModel, table=True):
    """A version's scoring rules in the shape the set-wise scoring query joins on."""

    __tablename__ = "score_rule"
    __table_args__ = (Index("ix_score_rule_match", "version_id", "type", "asset_key"),)

    version_id: int = Field(sa_column=Column(Integer, ForeignKey("rulebook_version.id"), primary_key=True))
    rule_id: int = Field(sa_column=Column(Integer, primary_key=True, autoincrement=False))
    action: str = Field(sa_column=Column(String(600), nullable=False))
    type: str = Field(sa_column=Column(String(40), nullable=False))
    asset: str | None = Field(default=None, sa_column=Column(String(500), nullable=True))
    asset_key: str | None = Field(default=None, sa_column=Column(String(500), nullable=True))  # what it matches
    points: int = Field(sa_column=Column(Integer, nullable=False))
    cap: int | None = Field(default=None, sa_column=Column(Integer, nullable=True))
    repeat_kind: str = Field(sa_column=Column(String(10), nullable=False))
    per_day: int | None = Field(default=None, sa_column=Column(Integer, nullable=True))


class DecayFactor(SQLModel, table=True):
    """A version's decay as a table: the share of its points (millionths) a contribution keeps at an age."""

    __tablename__ = "decay_factor"

    version_id: int = Field(sa_column=Column(Integer, ForeignKey("rulebook_version.id"), primary_key=True))
    age_days: int = Field(sa_column=Column(Integer, primary_key=True, autoincrement=False))
    factor_micros: int = Field(sa_column=Column(Integer, nullable=False))


class ScoreLedger(SQLModel, table=True):
    """Every point a lead holds: which activity earned how many under which rule of which rulebook version
    (centipoints, after repeat rules and caps, before decay). Derived from the activity log, whose rows already
    reference their lead: no foreign key of its own, which a full rescore would check a million times."""

    __tablename__ = "score_ledger"
    # SQLite stores the rows in key order, lead first: every read is by lead (migration 0009)
    __table_args__ = {"sqlite_with_rowid": False}

    lead_id: int = Field(sa_column=Column(Integer, primary_key=True, autoincrement=False))
    activity_id: int = Field(sa_column=Column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True))
    version_id: int = Field(sa_column=Column(Integer, nullable=False))
    rule_id: int = Field(sa_column=Column(Integer, nullable=False))
    points: int = Field(sa_column=Column(Integer, nullable=False))
    occurred_epoch: int = Field(sa_column=Column(BigInteger, nullable=False))


class LeadState(SQLModel, table=True):
    """Where a lead stands: score, fit, lifecycle stage, and the MQL trigger's state."""

    __tablename__ = "lead_state"
    __table_args__ = (Index("ix_lead_state_stage", "stage"),)

    lead_id: int = Field(sa_column=Column(Integer, ForeignKey("lead.id"), primary_key=True))
    version_id: int = Field(sa_column=Column(Integer, nullable=False))
    score: int = Field(sa_column=Column(Integer, nullable=False))
    peak_score: int = Field(sa_column=Column(Integer, nullable=False))
    fit_points: int = Field(sa_column=Column(Integer, nullable=False))
    fit_grade: str = Field(sa_column=Column(String(1), nullable=False))
    stage: str = Field(sa_column=Column(String(20), nullable=False))
    stage_changed_at: datetime = Field(sa_column=utc_column(nullable=False))
    mql_armed: bool = Field(sa_column=Column(Boolean, nullable=False))
    crossings: int = Field(sa_column=Column(Integer, nullable=False))
    cold: bool = Field(sa_column=Column(Boolean, nullable=False))
    qualified_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    scored_at: datetime = Field(sa_column=utc_column(nullable=False))
    # The stage the fit's disqualifiers took a disqualified lead out of, where it returns when they no longer
    # apply; NULL when a person disqualified it, or it is not disqualified
    fit_disqualified_from: str | None = Field(default=None, sa_column=Column(String(20), nullable=True))
    # When a person last recycled the lead (hand-raises count from then on while it is recycled); NULL: never
    recycled_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))


class StageChange(SQLModel, table=True):
    """Every lifecycle move: when, from, to, and why."""

    __tablename__ = "stage_change"

    id: int | None = Field(default=None, sa_column=Column(Integer, primary_key=True, autoincrement=True))
    lead_id: int = Field(sa_column=Column(Integer, ForeignKey("lead.id"), nullable=False, index=True))
    changed_at: datetime = Field(sa_column=utc_column(nullable=False, index=True))
    from_stage: str | None = Field(default=None, sa_column=Column(String(20), nullable=True))
    to_stage: str = Field(sa_column=Column(String(20), nullable=False))
    reason: str = Field(sa_column=Column(Text, nullable=False))
    version_id: int | None = Field(default=None, sa_column=Column(Integer, nullable=True))
    run_id: str | None = Field(default=None, sa_column=Column(String(64), nullable=True))


class LeadEvent(SQLModel, table=True):
    """An outbox of lead events (an MQL crossing, ...): written with the state change, sent to Prefect after, and
    sent again under the same id until a run finds Prefect holds it (store/outbox.py)."""

    __tablename__ = "lead_event"
    __table_args__ = (UniqueConstraint("lead_id", "kind", "crossing", name="uq_lead_event_crossing"),)

    id: int | None = Field(default=None, sa_column=Column(Integer, primary_key=True, autoincrement=True))
    event_id: str = Field(sa_column=Column(String(36), nullable=False, unique=True))
    lead_id: int = Field(sa_column=Column(Integer, ForeignKey("lead.id"), nullable=False))
    kind: str = Field(sa_column=Column(String(40), nullable=False))
    crossing: int = Field(sa_column=Column(Integer, nullable=False))
    occurred_at: datetime = Field(sa_column=utc_column(nullable=False))
    payload: str = Field(sa_column=Column(Text, nullable=False))
    run_id: str | None = Field(default=None, sa_column=Column(String(64), nullable=True))
    sent_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    sends: int = Field(default=0, sa_column=Column(Integer, nullable=False, server_default="0"))
    # When a run found the event on the Prefect server (the outbox's "confirmed").
    published_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True, index=True))


class HandoffQueue(SQLModel, table=True):
    """Work queued for the next rooms (routing, CRM sync) by a lead event, once per event and queue."""

    __tablename__ = "handoff_queue"
    __table_args__ = (
        UniqueConstraint("lead_event_id", "queue", name="uq_handoff_queue_event"),
        # The open rows only: what the next rooms work through and the health check counts, while done rows pile
        # up with every handover
        Index("ix_handoff_queue_open", "queue", "created_at", sqlite_where=text("done_at IS NULL"),
              postgresql_where=text("done_at IS NULL")),
    )

    id: int | None = Field(default=None, sa_column=Column(Integer, primary_key=True, autoincrement=True))
    lead_event_id: int = Field(sa_column=Column(Integer, ForeignKey("lead_event.id"), nullable=False))
    lead_id: int = Field(sa_column=Column(Integer, ForeignKey("lead.id"), nullable=False, index=True))
    queue: str = Field(sa_column=Column(String(20), nullable=False))
    created_at: datetime = Field(sa_column=utc_column(nullable=False))
    done_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    # Set when a row is closed without being worked (outcome "merged": its lead was merged into another that stands
    # elsewhere), with the detail a person needs. A pending row moved to the lead its lead was merged into says
    # so in `detail`; otherwise both are empty while pending or when worked.
    outcome: str | None = Field(default=None, sa_column=Column(String(20), nullable=True))
    detail: str | None = Field(default=None, sa_column=Column(String(200), nullable=True))


class ScoringState(SQLModel, table=True):
    """The scoring run's own bookmarks: the rulebook version in force and the last decay pass."""

    __tablename__ = "scoring_state"

    key: str = Field(sa_column=Column(String(20), primary_key=True))
    version_id: int = Field(sa_column=Column(Integer, ForeignKey("rulebook_version.id"), nullable=False))
    decayed_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    updated_at: datetime = Field(sa_column=utc_column(nullable=False))


class CrmRecord(SQLModel, table=True):
    """A lead's record in the CRM (a Lead, or the Contact it became): the link, what sales did there as last
    pulled, and what Handoff last wrote there. `sending` is the write in flight (its values and key), kept until
    the CRM's answer is recorded, so a run cut short can tell what the CRM already took."""

    __tablename__ = "crm_record"
    __table_args__ = (Index("ix_crm_record_crm_id", "crm_id"),)

    lead_id: int = Field(sa_column=Column(Integer, ForeignKey("lead.id"), primary_key=True))
    object: str = Field(sa_column=Column(String(20), nullable=False))
    crm_id: str | None = Field(default=None, sa_column=Column(String(18), nullable=True))
    owner_id: str | None = Field(default=None, sa_column=Column(String(18), nullable=True))
    status: str | None = Field(default=None, sa_column=Column(String(80), nullable=True))
    converted: bool = Field(default=False, sa_column=Column(Boolean, nullable=False, server_default=text("false")))
    contact_id: str | None = Field(default=None, sa_column=Column(String(18), nullable=True))
    opportunity_id: str | None = Field(default=None, sa_column=Column(String(18), nullable=True, index=True))
    account_id: str | None = Field(default=None, sa_column=Column(String(18), nullable=True))
    recycle_reason: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    product_line: str | None = Field(default=None, sa_column=Column(String(80), nullable=True))
    modified_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    modified_by: str | None = Field(default=None, sa_column=Column(String(18), nullable=True))
    pulled_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    pushed: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    pushed_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    sending: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    sending_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    attempts: int = Field(default=0, sa_column=Column(Integer, nullable=False, server_default="0"))
    error_code: str | None = Field(default=None, sa_column=Column(String(60), nullable=True))
    error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    failed_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    # Given up on until a person asks again (`handoff crm retry`): the error will not go away on its own
    dead_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True, index=True))
    # The CRM record was deleted (not merged): the lead gets a new one only when it qualifies again after this
    released_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    released_reason: str | None = Field(default=None, sa_column=Column(Text, nullable=True))


class CrmUser(SQLModel, table=True):
    """A CRM user (a rep, a manager, a queue's owner): who routing may give a lead to, and whom to escalate to."""

    __tablename__ = "crm_user"

    crm_id: str = Field(sa_column=Column(String(18), primary_key=True))
    email: str | None = Field(default=None, sa_column=Column(String(320), nullable=True, index=True))
    name: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    active: bool = Field(sa_column=Column(Boolean, nullable=False))
    manager_id: str | None = Field(default=None, sa_column=Column(String(18), nullable=True))
    timezone: str | None = Field(default=None, sa_column=Column(String(60), nullable=True))
    modified_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))


class CrmAccount(SQLModel, table=True):
    """A CRM account, found by its website's domain or its normalized name (routing's account-owner rule)."""

    __tablename__ = "crm_account"

    crm_id: str = Field(sa_column=Column(String(18), primary_key=True))
    name: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    name_key: str | None = Field(default=None, sa_column=Column(String(300), nullable=True, index=True))
    domain: str | None = Field(default=None, sa_column=Column(String(255), nullable=True, index=True))
    owner_id: str | None = Field(default=None, sa_column=Column(String(18), nullable=True))
    deleted: bool = Field(sa_column=Column(Boolean, nullable=False))
    modified_at: datetime = Field(sa_column=utc_column(nullable=False))


class CrmActivity(SQLModel, table=True):
    """A call, e-mail, meeting or task sales logged on a person: first contacts for the SLA and the funnel."""

    __tablename__ = "crm_activity"
    __table_args__ = (Index("ix_crm_activity_lead_occurred", "lead_id", "occurred_at"),)

    crm_id: str = Field(sa_column=Column(String(18), primary_key=True))
    who_id: str | None = Field(default=None, sa_column=Column(String(18), nullable=True, index=True))
    lead_id: int | None = Field(default=None, sa_column=Column(Integer, nullable=True))
    kind: str = Field(sa_column=Column(String(20), nullable=False))
    owner_id: str | None = Field(default=None, sa_column=Column(String(18), nullable=True))
    occurred_at: datetime = Field(sa_column=utc_column(nullable=False))
    subject: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    deleted: bool = Field(sa_column=Column(Boolean, nullable=False))
    modified_at: datetime = Field(sa_column=utc_column(nullable=False))


class CrmOpportunity(SQLModel, table=True):
    """An opportunity, as last pulled: a converted lead's way to Customer."""

    __tablename__ = "crm_opportunity"

    crm_id: str = Field(sa_column=Column(String(18), primary_key=True))
    account_id: str | None = Field(default=None, sa_column=Column(String(18), nullable=True))
    stage_name: str | None = Field(default=None, sa_column=Column(String(80), nullable=True))
    closed: bool = Field(sa_column=Column(Boolean, nullable=False))
    won: bool = Field(sa_column=Column(Boolean, nullable=False))
    amount: float | None = Field(default=None, sa_column=Column(Float, nullable=True))
    owner_id: str | None = Field(default=None, sa_column=Column(String(18), nullable=True))
    close_date: str | None = Field(default=None, sa_column=Column(String(10), nullable=True))
    deleted: bool = Field(sa_column=Column(Boolean, nullable=False))
    modified_at: datetime = Field(sa_column=utc_column(nullable=False))


class CrmWatermark(SQLModel, table=True):
    """How far each kind of CRM record has been pulled: the newest change time whose records are committed."""

    __tablename__ = "crm_watermark"

    kind: str = Field(sa_column=Column(String(20), primary_key=True))
    watermark: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    updated_at: datetime = Field(sa_column=utc_column(nullable=False))
    run_id: str | None = Field(default=None, sa_column=Column(String(64), nullable=True))


class RunLease(SQLModel, table=True):
    """Work only one run may do at a time (pushing to the CRM): held by a run until it ends or the lease expires,
    so a run that died does not hold it for ever."""

    __tablename__ = "run_lease"

    name: str = Field(sa_column=Column(String(40), primary_key=True))
    holder: str = Field(sa_column=Column(String(64), nullable=False))
    expires_at: datetime = Field(sa_column=utc_column(nullable=False))


class Notification(SQLModel, table=True):
    """An outbox of messages to people (a rep's new lead, a reminder, a manager's escalation): written with the
    decision that causes it, sent after, once. `key` makes it once per cause. A notification that waits for an
    assignment is sent only once the CRM holds that owner. A send that was under way when its run died is not
    sent again (`unconfirmed_at`): the receiver may have it."""

    __tablename__ = "notification"
    __table_args__ = (
        Index("ix_notification_unsent", "created_at", sqlite_where=text("sent_at IS NULL AND given_up_at IS NULL"),
              postgresql_where=text("sent_at IS NULL AND given_up_at IS NULL")),
        # Whether an assignment's owner was told (the sweep of untold assignments): without it, a scan of every
        # notification for each current assignment
        Index("ix_notification_assignment", "assignment_id"),
    )

    id: int | None = Field(default=None, sa_column=Column(Integer, primary_key=True, autoincrement=True))
    key: str = Field(sa_column=Column(String(200), nullable=False, unique=True))
    kind: str = Field(sa_column=Column(String(40), nullable=False))
    lead_id: int | None = Field(default=None, sa_column=Column(Integer, ForeignKey("lead.id"), nullable=True, index=True))
    assignment_id: int | None = Field(default=None, sa_column=Column(Integer, nullable=True))
    recipient: str = Field(sa_column=Column(String(320), nullable=False))
    subject: str = Field(sa_column=Column(Text, nullable=False))
    body: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = Field(sa_column=utc_column(nullable=False))
    next_attempt_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    sending_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    sent_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    attempts: int = Field(default=0, sa_column=Column(Integer, nullable=False, server_default="0"))
    error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    given_up_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    unconfirmed_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))


class Assignment(SQLModel, table=True):
    """Who owns a sales-ready lead, by which rule and why: routing's decision, a person's, or the SLA's
    reassignment; the routing path in `path`. The current one has no `superseded_at`. `written_at`: when the CRM
    took the owner (a kept owner needs no write); notifications of it wait for that."""

    __tablename__ = "assignment"
    __table_args__ = (
        Index("ix_assignment_current", "lead_id", unique=True, sqlite_where=text("superseded_at IS NULL"),
              postgresql_where=text("superseded_at IS NULL")),
        Index("ix_assignment_unwritten", "lead_id", sqlite_where=text("written_at IS NULL AND superseded_at IS NULL"),
              postgresql_where=text("written_at IS NULL AND superseded_at IS NULL")),
        Index("ix_assignment_owner_decided", "owner_email", "decided_at"),
        # A lead's assignments in order, superseded ones too (the one before a reassignment, a lead's history)
        Index("ix_assignment_lead", "lead_id", "id"),
    )

    id: int | None = Field(default=None, sa_column=Column(Integer, primary_key=True, autoincrement=True))
    lead_id: int = Field(sa_column=Column(Integer, ForeignKey("lead.id"), nullable=False))
    owner_email: str | None = Field(default=None, sa_column=Column(String(320), nullable=True))
    owner_crm_id: str | None = Field(default=None, sa_column=Column(String(18), nullable=True))
    owner_name: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    queue: str | None = Field(default=None, sa_column=Column(String(120), nullable=True))
    team: str | None = Field(default=None, sa_column=Column(String(80), nullable=True))
    rule: str = Field(sa_column=Column(Text, nullable=False))
    kind: str = Field(sa_column=Column(String(20), nullable=False))  # routed, kept, by_hand, reassigned
    reason: str = Field(sa_column=Column(Text, nullable=False))
    path: str = Field(sa_column=Column(Text, nullable=False))  # the decision with its routing path, as JSON
    notify_only: bool = Field(sa_column=Column(Boolean, nullable=False))
    decided_at: datetime = Field(sa_column=utc_column(nullable=False))
    written_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    superseded_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    run_id: str | None = Field(default=None, sa_column=Column(String(64), nullable=True))


class RoutingStateRow(SQLModel, table=True):
    """Routing's state between leads and runs (round robins, leads given per rep and day), under a version a run
    checks when it saves, so two runs at once never share out leads from one state."""

    __tablename__ = "routing_state"

    key: str = Field(sa_column=Column(String(20), primary_key=True))
    state: str = Field(sa_column=Column(Text, nullable=False))
    version: int = Field(sa_column=Column(Integer, nullable=False))
    updated_at: datetime = Field(sa_column=utc_column(nullable=False))


class SlaTimerRow(SQLModel, table=True):
    """One owner's SLA on one lead, from handoff to its end (domain.sla.SlaTimer, whole, in `timer`); the columns
    the scan and the measures read beside it. A step is applied once: only from the state it expects."""

    __tablename__ = "sla_timer"
    __table_args__ = (
        Index("ix_sla_timer_running", "next_step_at", sqlite_where=text("closed_at IS NULL"),
              postgresql_where=text("closed_at IS NULL")),
    )

    id: int | None = Field(default=None, sa_column=Column(Integer, primary_key=True, autoincrement=True))
    lead_id: int = Field(sa_column=Column(Integer, ForeignKey("lead.id"), nullable=False, index=True))
    assignment_id: int = Field(sa_column=Column(Integer, nullable=False, unique=True))
    owner_email: str | None = Field(default=None, sa_column=Column(String(320), nullable=True))
    team: str | None = Field(default=None, sa_column=Column(String(80), nullable=True))
    policy: str = Field(sa_column=Column(Text, nullable=False))
    state: str = Field(sa_column=Column(String(20), nullable=False))
    opened_at: datetime = Field(sa_column=utc_column(nullable=False))
    due_at: datetime = Field(sa_column=utc_column(nullable=False))
    next_step_at: datetime = Field(sa_column=utc_column(nullable=False))  # when the scan looks at it again at the latest
    first_contact_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    closed_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    timer: str = Field(sa_column=Column(Text, nullable=False))


class AlertCursor(SQLModel, table=True):
    """How far the owner alerts have looked through the activity log: every activity up to `through_id` was
    looked at (moved in the transaction that enqueues what the look found)."""

    __tablename__ = "alert_cursor"

    name: str = Field(sa_column=Column(String(40), primary_key=True))
    through_id: int = Field(sa_column=Column(BigInteger, nullable=False))
    updated_at: datetime = Field(sa_column=utc_column(nullable=False))
    run_id: str | None = Field(default=None, sa_column=Column(String(64), nullable=True))


class OwnerAlertLead(SQLModel, table=True):
    """What the owner alerts remember of an owned lead (domain.owner_alerts.AlertState): the last engagement
    alert and whom it told (that owner's quiet period runs from it), the newest activity looked at, whether the
    score stood at the readiness level, and whether that is to be decided again once the lead's activities are
    scored."""

    __tablename__ = "owner_alert_lead"
    __table_args__ = (
        # The few leads a look must come back to, read at every run
        Index("ix_owner_alert_lead_recheck", "lead_id", sqlite_where=text("recheck"), postgresql_where=text("recheck")),
    )

    lead_id: int = Field(sa_column=Column(Integer, ForeignKey("lead.id"), primary_key=True))
    engaged_alert_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    engaged_alert_to: str | None = Field(default=None, sa_column=Column(String(320), nullable=True))
    looked_through: int = Field(sa_column=Column(BigInteger, nullable=False))
    ready: bool = Field(sa_column=Column(Boolean, nullable=False))
    recheck: bool = Field(sa_column=Column(Boolean, nullable=False))
    looked_at: datetime = Field(sa_column=utc_column(nullable=False))


class OooFeed(SQLModel, table=True):
    """A rep's out-of-office calendar feed as last read: the absences of its last good read (of the address whose
    digest is kept: the address itself may hold the calendar's secret), when it was last tried, and since when it
    fails, with the error."""

    __tablename__ = "ooo_feed"

    rep_email: str = Field(sa_column=Column(String(320), primary_key=True))
    url_digest: str = Field(sa_column=Column(String(64), nullable=False))
    absences: str = Field(sa_column=Column(Text, nullable=False))
    read_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    tried_at: datetime = Field(sa_column=utc_column(nullable=False))
    error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    failing_since: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))

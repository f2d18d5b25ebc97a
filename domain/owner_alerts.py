"""Owner alerts (the relationship-owner scenario): who owns a lead, and which alerts a look at owned leads' new
activities sends their owners: an engagement with a campaign (at most one per quiet period) and the score
reaching the readiness level (once per crossing). Pure: `now` is an argument."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Iterable, Sequence

from domain.activity import ActivityType
from domain.notifications import Engagement, Person, notification_key
from domain.teams import SalesTeams

# What a rep cares to hear of at once: campaign e-mail clicks, content, webinars, forms and the hand-raises
ENGAGEMENTS = frozenset({
    ActivityType.EMAIL_CLICK, ActivityType.WEBINAR_ATTENDED, ActivityType.FORM_FILL,
    ActivityType.WHITEPAPER_DOWNLOAD, ActivityType.DEMO_REQUEST, ActivityType.CONTACT_SALES,
    ActivityType.TRIAL_SIGNUP,
})


@dataclass(frozen=True)
class AlertRules:
    """config/notifications.yaml's `owner_alerts`, as values (the readiness level in centipoints)."""

    enabled: bool = True
    activity_types: frozenset[str] = frozenset(t.value for t in ENGAGEMENTS)
    pages: tuple[str, ...] = ("/pricing",)  # a page view counts only on these pages (and the pages below them)
    quiet_period: timedelta = timedelta(hours=24)
    readiness_level: int | None = 5000
    max_age: timedelta = timedelta(hours=24)  # older activities (a backfill, a late export) alert nobody

    def fresh_since(self, now: datetime) -> datetime:
        return now - self.max_age

    def counts(self, activity: Engagement) -> bool:
        """Whether the activity is an engagement its owner is alerted of."""
        if activity.type == ActivityType.PAGE_VIEW:
            path = page_path(activity.asset)
            return any(path == page or path.startswith(page.rstrip("/") + "/") for page in self.pages)
        return activity.type in self.activity_types


def page_path(asset: str | None) -> str:
    """A page view's path, whether the tool gave a path or a whole URL: '/pricing/enterprise'."""
    text = (asset or "").strip().lower()
    if "://" in text:
        text = "/" + text.split("://", 1)[1].partition("/")[2]
    path = text.split("?", 1)[0].split("#", 1)[0]
    return path.rstrip("/") or "/"


# ---------------------------------------------------------------------------------------------- the owner

@dataclass(frozen=True)
class CrmOwner:
    """The owner of the lead's CRM record as last pulled: a CRM user (email and active as the CRM's user list
    says), or an id that is no user's (a queue)."""

    crm_id: str
    email: str | None = None
    name: str | None = None
    active: bool = False
    pulled_at: datetime | None = None


@dataclass(frozen=True)
class AssignedOwner:
    """The lead's current assignment in Handoff: a rep, or a queue (no email). `written_at`: when the CRM took
    the owner (None: not yet); `active`: the rep's CRM user (None: no user list pulled)."""

    email: str | None
    name: str | None = None
    written_at: datetime | None = None
    active: bool | None = None


def owner_of(record: CrmOwner | None, assigned: AssignedOwner | None, teams: SalesTeams) -> tuple[Person | None, str]:
    """The rep who owns the lead, and why (or why nobody). The CRM's owner as Handoff last knew it wins: the one
    pulled, or the one Handoff wrote to the CRM after that pull (its assignment); a person who moves the record
    in the CRM is the owner from the next pull on. A queue, an inactive user or a user who is no rep is nobody."""
    written = assigned.written_at if assigned else None
    if written and (record is None or record.pulled_at is None or written > record.pulled_at):
        if not assigned.email:
            return None, "Handoff gave it to a queue"
        if assigned.active is False:
            return None, f"its owner {assigned.email} is no longer an active CRM user"
        email, name, how = assigned.email, assigned.name, "Handoff gave it to you and the CRM holds you as its owner"
    elif record is not None:
        if not record.email:
            return None, f"its CRM owner {record.crm_id} is no CRM user (a queue?)"
        if not record.active:
            return None, f"its CRM owner {record.email} is not an active CRM user"
        email, name, how = record.email, record.name, "you own it in the CRM"
    else:
        return None, "it has no owner"
    rep = teams.rep(email)
    if rep is None:
        return None, f"its owner {email} is not a rep in the sales teams"
    return Person(rep.email, name or rep.name), how


# ---------------------------------------------------------------------------------------------- a look

@dataclass(frozen=True)
class AlertState:
    """What the alerts remember of an owned lead between looks."""

    engaged_alert_at: datetime | None = None  # the quiet period runs from here
    looked_through: int = 0  # the newest activity looked at
    ready: bool = False  # the score stood at the readiness level at the last look
    recheck: bool = False  # the last look found activities not scored yet: its readiness waits for the next
    engaged_alert_to: str | None = None  # whom that alert told: a new owner's quiet period is their own


@dataclass(frozen=True)
class LeadLook:
    """An owned lead at a look: its activities not looked at before (any type, oldest first), its score in
    centipoints (None: never scored) and whether activities of it still wait to be scored."""

    lead_id: int
    owner: Person
    why_owner: str
    activities: tuple[Engagement, ...] = ()
    score: int | None = None
    unscored: bool = False
    state: AlertState = field(default_factory=AlertState)


@dataclass(frozen=True)
class AlertDecision:
    """A look's outcome for one lead: the engagements its owner is alerted of (newest first; none: no engagement
    alert), the score if it reached the readiness level, why, and the lead's state after the look."""

    lead_id: int
    owner: Person
    why_owner: str
    engaged: tuple[Engagement, ...]
    reached: int | None
    why: str
    state: AlertState
    quiet_until: datetime | None = None  # no other engagement alert for this lead before
    held_back: int = 0  # engagements the quiet period kept from its owner

    @property
    def alerted(self) -> bool:
        return bool(self.engaged) or self.reached is not None

    @property
    def key(self) -> str:
        """The alert's notification key, once per lead and look (the newest activity looked at says which look)."""
        return notification_key("owner-engaged" if self.engaged else "owner-ready",
                                f"{self.lead_id}:{self.state.looked_through}")


def decide(looks: Iterable[LeadLook], rules: AlertRules, now: datetime) -> list[AlertDecision]:
    """Each owned lead's alert: its fresh activities that count, unless an engagement alert went out within the
    quiet period; and its score reaching the readiness level from below (decided once its activities are all
    scored). Activities looked at before, or older than `max_age`, alert nobody."""
    return [_decided(look, rules, now) for look in looks]


def _decided(look: LeadLook, rules: AlertRules, now: datetime) -> AlertDecision:
    state = look.state
    new = [a for a in look.activities if a.activity_id is None or a.activity_id > state.looked_through]
    through = max([state.looked_through, *(a.activity_id or 0 for a in new)])
    counted = sorted((a for a in new if a.occurred_at >= rules.fresh_since(now) and rules.counts(a)),
                     key=lambda a: (a.occurred_at, a.activity_id or 0), reverse=True)
    quiet_since = state.engaged_alert_at
    told = state.engaged_alert_to
    if told is not None and told.lower() != look.owner.email.lower():
        quiet_since = None  # the rep told last no longer owns it; its new owner has heard nothing yet
    quiet = quiet_since is not None and now - quiet_since < rules.quiet_period
    engaged = tuple(counted) if counted and not quiet else ()
    reached, ready, recheck = None, state.ready, False
    if rules.readiness_level is not None:
        if look.unscored:
            recheck = True  # the score does not count its newest activities yet
        elif look.score is not None:
            ready = look.score >= rules.readiness_level
            reached = look.score if ready and not state.ready else None
    why = "; ".join(_reasons(counted, engaged, quiet_since, reached, recheck)) or "nothing new to tell"
    after = replace(state, looked_through=through, ready=ready, recheck=recheck)
    if engaged:
        after = replace(after, engaged_alert_at=now, engaged_alert_to=look.owner.email)
    quiet_until = after.engaged_alert_at + rules.quiet_period if after.engaged_alert_at else None
    return AlertDecision(look.lead_id, look.owner, look.why_owner, engaged, reached, why, after, quiet_until,
                         held_back=0 if engaged else len(counted))


def _reasons(counted: Sequence[Engagement], engaged: Sequence[Engagement], quiet_since: datetime | None,
             reached: int | None, recheck: bool) -> list[str]:
    reasons = []
    if engaged:
        reasons.append(f"{len(engaged)} engagement{'s' if len(engaged) > 1 else ''}")
    elif counted:
        reasons.append(f"quiet period: an engagement alert went out at {quiet_since:%Y-%m-%d %H:%M} UTC")
    if reached is not None:
        reasons.append("reached the readiness level")
    if recheck:
        reasons.append("readiness decided once its activities are scored")
    return reasons

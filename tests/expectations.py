"""What a correct connector makes of a stand-in event: the one expectation every tool's tests compare against."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from domain.activity import ActivityType, normalize_email
from sandbox import world as w

KIND_TO_TYPE = {
    w.SUBSCRIBED: ActivityType.NEWSLETTER_SIGNUP,
    w.EMAIL_OPENED: ActivityType.EMAIL_OPEN,
    w.EMAIL_CLICKED: ActivityType.EMAIL_CLICK,
    w.EMAIL_BOUNCED: ActivityType.EMAIL_BOUNCE,
    w.UNSUBSCRIBED: ActivityType.UNSUBSCRIBE,
    w.PAGE_VISITED: ActivityType.PAGE_VIEW,
    w.WHITEPAPER_DOWNLOADED: ActivityType.WHITEPAPER_DOWNLOAD,
    w.WEBINAR_REGISTERED: ActivityType.WEBINAR_REGISTRATION,
    w.WEBINAR_ATTENDED: ActivityType.WEBINAR_ATTENDED,
    w.DEMO_REQUESTED: ActivityType.DEMO_REQUEST,
    w.TRIAL_STARTED: ActivityType.TRIAL_SIGNUP,
    w.CONTACT_SALES: ActivityType.CONTACT_SALES,
    w.FORM_FILLED: ActivityType.FORM_FILL,
}


@dataclass(frozen=True)
class Expected:
    type: ActivityType
    asset: str | None
    campaign: str | None
    email: str
    occurred_at: datetime


def expected_activity(world: w.World, event: w.Event) -> Expected:
    """Type, asset (page path, e-mail name, white paper or webinar title, or form name), campaign (e-mails
    only), normalized e-mail of the person, and the time, second-precise."""
    person = world.people[event.person]
    campaign = event.campaign if event.kind in (w.EMAIL_OPENED, w.EMAIL_CLICKED, w.EMAIL_BOUNCED, w.UNSUBSCRIBED) else None
    return Expected(
        type=KIND_TO_TYPE[event.kind],
        asset=event.asset,
        campaign=campaign,
        email=normalize_email(person.email),
        occurred_at=event.occurred_at,
    )

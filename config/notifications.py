"""Where notifications go (config/notifications.yaml): each person's channel by Apprise URL, channels that get
every notification, the CRM record link, how often a failing send is tried, and when a lead's owner is alerted."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from config.loading import ConfigError, interpolate, read_yaml
from config.settings import CONFIG_DIR
from domain.activity import ActivityType
from domain.owner_alerts import ENGAGEMENTS, AlertRules

NOTIFICATIONS_FILE = CONFIG_DIR / "notifications.yaml"


class OwnerAlertConfig(BaseModel):
    """`owner_alerts`: when the rep who owns a lead is told it engaged or reached the readiness level."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    activity_types: list[str] = Field(default_factory=lambda: sorted(t.value for t in ENGAGEMENTS))
    pages: list[str] = Field(default_factory=lambda: ["/pricing"])
    quiet_hours: float = Field(default=24, ge=0)
    readiness_points: float | None = Field(default=50, gt=0)
    max_activity_age_hours: float = Field(default=24, gt=0)

    @field_validator("activity_types")
    @classmethod
    def _known_types(cls, value: list[str]) -> list[str]:
        known = {t.value for t in ActivityType}
        unknown = [t for t in value if t not in known]
        if unknown:
            raise ValueError(f"unknown activity types {unknown}; known: {', '.join(sorted(known))}")
        return value

    @field_validator("pages")
    @classmethod
    def _paths(cls, value: list[str]) -> list[str]:
        wrong = [p for p in value if not p.startswith("/")]
        if wrong:
            raise ValueError(f"a page is a path starting with '/': {wrong}")
        return value

    def rules(self) -> AlertRules:
        level = None if self.readiness_points is None else round(self.readiness_points * 100)
        return AlertRules(enabled=self.enabled, activity_types=frozenset(self.activity_types),
                          pages=tuple(p.lower().rstrip("/") or "/" for p in self.pages),
                          quiet_period=timedelta(hours=self.quiet_hours), readiness_level=level,
                          max_age=timedelta(hours=self.max_activity_age_hours))


class NotificationConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    person: str = Field(description="An Apprise URL with {email} for the recipient")
    also: list[str] = Field(default_factory=list)
    record_link: str = "{instance_url}/lightning/r/{object}/{crm_id}/view"
    max_attempts: int = Field(default=5, ge=1)
    owner_alerts: OwnerAlertConfig = Field(default_factory=OwnerAlertConfig)

    @field_validator("person")
    @classmethod
    def _names_the_recipient(cls, value: str) -> str:
        if "{email}" not in value:
            raise ValueError("the person's channel must say where the recipient's address goes: {email}")
        return value

    def urls_for(self, email: str) -> list[str]:
        """The Apprise URLs one notification to `email` goes to."""
        return [self.person.replace("{email}", email), *self.also]


def load_notifications(path: Path = NOTIFICATIONS_FILE, env: dict[str, str] | None = None) -> NotificationConfig:
    document = read_yaml(path)
    if not isinstance(document, dict):
        raise ConfigError(f"{path}: expected a mapping")
    values = interpolate(dict(document), env=env, place=str(path))
    also = values.get("also")
    if isinstance(also, str):  # from the environment: a YAML list in one variable
        try:
            values["also"] = yaml.safe_load(also) or []
        except yaml.YAMLError:
            raise ConfigError(f"{path}: also: {also!r} is not a YAML list of URLs") from None
    try:
        return NotificationConfig(**values)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ConfigError(f"{path}: {'.'.join(str(p) for p in first['loc'])}: {first['msg']}") from None

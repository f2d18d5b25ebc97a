"""Where notifications go (config/notifications.yaml): each person's channel by Apprise URL, channels that get
every notification, the CRM record link, and how often a failing send is tried."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from config.loading import ConfigError, interpolate, read_yaml
from config.settings import CONFIG_DIR

NOTIFICATIONS_FILE = CONFIG_DIR / "notifications.yaml"


class NotificationConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    person: str = Field(description="An Apprise URL with {email} for the recipient")
    also: list[str] = Field(default_factory=list)
    record_link: str = "{instance_url}/lightning/r/{object}/{crm_id}/view"
    max_attempts: int = Field(default=5, ge=1)

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

"""The CRM sync's configuration (config/crm.yaml): the connection, Handoff's fields on the CRM's records, when a
record is created, and how the CRM's statuses and stages read as lifecycle stages."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from config.loading import ConfigError, interpolate, read_yaml
from config.settings import CONFIG_DIR
from config.sources import Credential, PrefectSecretRef
from domain.crm import CREATE_FIELDS, HANDOFF_FIELDS, StageMapping
from domain.lifecycle import Stage

CRM_FILE = CONFIG_DIR / "crm.yaml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Connection(_Strict):
    login_url: str = "https://login.salesforce.com"
    instance_url: str | None = None
    api_version: str = Field(default="62.0", pattern=r"^\d{2,3}\.0$")
    timeout_seconds: float = Field(default=30, gt=0)
    credentials: dict[str, Credential] = Field(default_factory=dict)

    @field_validator("login_url", "instance_url")
    @classmethod
    def _strip_slash(cls, value: str | None) -> str | None:
        return value.rstrip("/") if value else None


class Push(_Strict):
    create_at: Literal["lead", "mql", "never"] = "mql"
    new_leads_owner: Literal["crm_rule", "handoff"] = "handoff"
    bulk_above: int = Field(default=2000, ge=1)
    budget_floor: float = Field(default=0.1, ge=0, le=1)
    max_attempts: int = Field(default=5, ge=1)


class Pull(_Strict):
    overlap_minutes: float = Field(default=5, ge=0)
    statuses: dict[str, Stage | None] = Field(default_factory=dict)
    converted: Stage = Stage.SQL
    converted_with_opportunity: Stage = Stage.OPPORTUNITY
    opportunity_stages: dict[str, Stage | None] = Field(default_factory=dict)
    won: Stage = Stage.CUSTOMER
    lost: Stage | None = Stage.RECYCLED


class CrmConfig(_Strict):
    enabled: bool = False
    connection: Connection = Connection()
    fields: dict[str, str]
    create_fields: dict[str, str]
    placeholders: dict[str, str] = Field(default_factory=dict)
    recycle_reason_field: str | None = None
    product_line_field: str | None = None
    push: Push = Push()
    pull: Pull = Pull()

    @field_validator("fields")
    @classmethod
    def _handoff_fields(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value) - {"key", *HANDOFF_FIELDS})
        if unknown:
            raise ValueError(f"unknown Handoff fields {unknown}: one of key, {', '.join(HANDOFF_FIELDS)}")
        if "key" not in value:
            raise ValueError("the key field (Handoff's external id on the CRM's records) is required")
        return value

    @field_validator("create_fields", "placeholders")
    @classmethod
    def _details(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value) - set(CREATE_FIELDS))
        if unknown:
            raise ValueError(f"unknown person fields {unknown}: one of {', '.join(CREATE_FIELDS)}")
        return value

    def stage_mapping(self) -> StageMapping:
        p = self.pull
        return StageMapping(statuses=p.statuses, opportunity_stages=p.opportunity_stages, won=p.won, lost=p.lost,
                            converted=p.converted, converted_with_opportunity=p.converted_with_opportunity)

    def create_at(self) -> tuple[Stage, ...]:
        """The stages at which a lead with no CRM record gets one (none when `never`)."""
        if self.push.create_at == "never":
            return ()
        first = Stage.LEAD if self.push.create_at == "lead" else Stage.MQL
        funnel = (Stage.LEAD, Stage.MQL, Stage.SQL, Stage.OPPORTUNITY, Stage.CUSTOMER)
        return funnel[funnel.index(first):]


def load_crm_config(path: Path = CRM_FILE, env: dict[str, str] | None = None) -> CrmConfig:
    """The sync's configuration; a disabled sync needs none of its variables (it is not interpolated)."""
    document = read_yaml(path)
    if not isinstance(document, dict):
        raise ConfigError(f"{path}: expected a mapping")
    enabled = interpolate(document.get("enabled", False), env=env, place=f"{path}: enabled")
    if str(enabled).strip().lower() in {"false", "0", "no", "off", ""}:
        document = {**document, "connection": {}}
        values: dict[str, Any] = {key: value for key, value in document.items() if key != "enabled"}
        values["enabled"] = False
    else:
        values = interpolate(dict(document), env=env, place=str(path))
        values["enabled"] = True
    connection = dict(values.get("connection") or {})
    connection["credentials"] = {
        key: PrefectSecretRef(**cred) if isinstance(cred, dict) else SecretStr(str(cred))
        for key, cred in (connection.get("credentials") or {}).items() if cred not in (None, "")
    }
    values["connection"] = connection
    try:
        return CrmConfig(**values)
    except ValidationError as exc:
        first = exc.errors()[0]
        place = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"{path}: {place}: {first['msg']}") from None

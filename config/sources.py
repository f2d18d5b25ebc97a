"""The marketing sources to pull from: which tools, where, with which credentials and mapping rules."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from config.loading import ConfigError, interpolate, read_yaml, where
from domain.activity import ActivityType
from domain.forms import FormRule, FormTypes

SourceKind = Literal["marketo", "hubspot", "mautic", "jsonl", "webhook"]  # webhook: records pushed to Handoff only


class PrefectSecretRef(BaseModel):
    """A credential kept in a Prefect Secret block, loaded when the run starts."""

    model_config = ConfigDict(frozen=True)
    prefect_secret: str


Credential = SecretStr | PrefectSecretRef


class SourceConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,39}$")
    kind: SourceKind
    enabled: bool = True
    base_url: str | None = None
    credentials: dict[str, Credential] = Field(default_factory=dict)
    overlap_minutes: float = Field(default=60, ge=0, description="Re-read this much before the watermark for late data")
    page_size: int | None = Field(default=None, ge=1)
    path: str | None = Field(default=None, description="jsonl: a file, directory or glob of .jsonl files")
    form_types: dict[str, ActivityType] = Field(default_factory=dict)
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("base_url")
    @classmethod
    def _strip_slash(cls, value: str | None) -> str | None:
        return value.rstrip("/") if value else value

    def form_rules(self) -> FormTypes:
        return FormTypes([FormRule(template, kind) for template, kind in self.form_types.items()])


def _problem(exc: ValidationError) -> str:
    first = exc.errors()[0]
    field = ".".join(str(p) for p in first["loc"])
    return f"{field}: {first['msg']}" if field else first["msg"]


def load_sources(path: Path, env: dict[str, str] | None = None) -> list[SourceConfig]:
    """Enabled sources of a sources file; disabled ones are not interpolated, so they need no environment."""
    document = read_yaml(path)
    if not isinstance(document, dict) or not isinstance(document.get("sources"), list):
        raise ConfigError(f"{path}: expected a mapping with a 'sources' list")
    shared_forms = document.get("form_types") or {}
    sources: list[SourceConfig] = []
    seen: set[str] = set()
    for entry in document["sources"]:
        place = where(path, entry)
        if not isinstance(entry, dict):
            raise ConfigError(f"{place}: each source must be a mapping")
        enabled = interpolate(entry.get("enabled", True), env=env, place=f"{place}: enabled")
        if str(enabled).strip().lower() in {"false", "0", "no", "off"}:
            continue
        values = interpolate(dict(entry), env=env, place=f"{place}: source {entry.get('name')!r}")
        values["enabled"] = True
        values["form_types"] = {**shared_forms, **(values.get("form_types") or {})}
        values["credentials"] = {
            key: (PrefectSecretRef(**cred) if isinstance(cred, dict) else SecretStr(str(cred)))
            for key, cred in (values.get("credentials") or {}).items()
        }
        try:
            source = SourceConfig(**values)
        except (ValidationError, TypeError) as exc:
            detail = _problem(exc) if isinstance(exc, ValidationError) else str(exc)
            raise ConfigError(f"{place}: source {entry.get('name')!r}: {detail}") from None
        if source.name in seen:
            raise ConfigError(f"{place}: source name {source.name!r} is used twice")
        if source.kind in ("marketo", "hubspot", "mautic") and not source.base_url:
            raise ConfigError(f"{place}: source {source.name!r}: base_url is required for {source.kind}")
        if source.kind == "jsonl" and not source.path:
            raise ConfigError(f"{place}: source {source.name!r}: path is required for jsonl")
        token = source.credentials.get("webhook_token")
        if source.kind == "webhook" and (token is None or isinstance(token, SecretStr) and not token.get_secret_value()):
            raise ConfigError(f"{place}: source {source.name!r}: credentials.webhook_token is required for webhook")
        seen.add(source.name)
        sources.append(source)
    return sources

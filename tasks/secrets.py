"""Credentials for a source, from the environment (already in its config) or from Prefect Secret blocks."""

from __future__ import annotations

from prefect.blocks.system import Secret

from config.sources import Credential, PrefectSecretRef, SourceConfig


def resolve_secrets(config: SourceConfig) -> dict[str, str]:
    """Plain credential strings for the connector; they are never logged or returned in summaries."""
    return resolve_credentials(config.credentials)


def resolve_credentials(credentials: dict[str, Credential]) -> dict[str, str]:
    """Plain strings of credentials given in the environment or naming Prefect Secret blocks."""
    resolved: dict[str, str] = {}
    for key, credential in credentials.items():
        if isinstance(credential, PrefectSecretRef):
            try:
                value = Secret.load(credential.prefect_secret).get()
            except ValueError:
                raise ValueError(f"Prefect Secret block {credential.prefect_secret!r} (for {key}) not found") from None
            resolved[key] = str(value)
        else:
            resolved[key] = credential.get_secret_value()
    return resolved

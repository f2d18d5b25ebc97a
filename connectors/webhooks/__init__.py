"""The marketing tools' own webhooks, verified the way each tool signs them and read into the records the
polling path produces (same keys, same quarantine). `webhook_reader` picks the reader a source's kind needs;
docs/webhooks.md says how to point each tool at POST /webhooks/<source name>."""

from __future__ import annotations

import importlib
from typing import Mapping

from config.sources import SourceConfig
from connectors.webhooks.common import Delivery, Refused, WebhookReader

_READERS = {
    "mautic": ("connectors.webhooks.mautic", "MauticReader"),
    "hubspot": ("connectors.webhooks.hubspot", "HubSpotReader"),
    "marketo": ("connectors.webhooks.marketo", "MarketoReader"),
    "webhook": ("connectors.webhooks.jsonl", "JsonLinesReader"),
}


def webhook_reader(source: SourceConfig, secrets: Mapping[str, str]) -> WebhookReader | None:
    """The reader of a source's webhooks; None when it takes none (no webhook_secret, or webhook_token for the
    generic kind, configured)."""
    if source.kind not in _READERS:
        return None
    secret = secrets.get("webhook_token" if source.kind == "webhook" else "webhook_secret") or ""
    if not secret:
        return None
    module, name = _READERS[source.kind]
    return getattr(importlib.import_module(module), name)(source, secret)


__all__ = ["Delivery", "Refused", "WebhookReader", "webhook_reader"]

"""One client per marketing tool; `build_source` picks the client a source's `kind` names."""

from __future__ import annotations

import importlib
import time
from typing import Callable

from config.sources import SourceConfig
from connectors.http import Backoff
from connectors.marketing.base import MarketingSource, Page

_CLIENTS = {
    "marketo": ("connectors.marketing.marketo", "MarketoSource"),
    "hubspot": ("connectors.marketing.hubspot", "HubSpotSource"),
    "mautic": ("connectors.marketing.mautic", "MauticSource"),
    "jsonl": ("connectors.marketing.jsonl", "JsonlSource"),
    "webhook": ("connectors.marketing.pushed", "PushedSource"),
}


def build_source(
    config: SourceConfig,
    secrets: dict[str, str],
    *,
    timeout: tuple[float, float] = (5.0, 60.0),
    backoff: Backoff = Backoff(),
    sleep: Callable[[float], None] = time.sleep,
) -> MarketingSource:
    module, name = _CLIENTS[config.kind]
    client = getattr(importlib.import_module(module), name)
    return client(config, secrets, timeout=timeout, backoff=backoff, sleep=sleep)


__all__ = ["MarketingSource", "Page", "build_source"]

"""A source whose records are only pushed to Handoff (the generic webhook endpoint): a scheduled ingest finds
nothing to fetch."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Iterator

from config.sources import SourceConfig
from connectors.marketing.base import Page


class PushedSource:
    def __init__(self, config: SourceConfig, secrets: dict[str, str] | None = None, **_: Any):
        self.name = config.name

    def pages(self, since: datetime | None) -> Iterator[Page]:
        yield Page()

    def close(self) -> None:
        pass

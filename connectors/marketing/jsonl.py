"""Activities from JSON Lines files, so any tool's export can be loaded (format in the README)."""

from __future__ import annotations

import glob
import json
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator

from config.sources import SourceConfig
from connectors.http import PermanentError
from connectors.marketing.base import FileRead, Page, newest
from domain.activity import PERSON_FIELDS, PersonRecord, Rejection, build_activity, normalize_email

PAGE_LINES = 5000


def _files(pattern: str) -> list[Path]:
    path = Path(pattern)
    if path.is_dir():
        return sorted(path.glob("*.jsonl"))
    if path.is_file():
        return [path]
    return sorted(Path(p) for p in glob.glob(pattern))


def _person(source: str, line: dict[str, Any]) -> PersonRecord | None:
    fields = {name: line.get(name) for name in PERSON_FIELDS if line.get(name) not in (None, "")}
    if not fields:
        return None
    size = fields.get("company_size")
    if size is not None:
        try:
            fields["company_size"] = int(size)
        except (TypeError, ValueError):
            fields.pop("company_size")
    contact = line.get("contact_id")
    return PersonRecord(source, None if contact in (None, "") else str(contact), normalize_email(line.get("email")), **fields)


class JsonlSource:
    """Every file is read whole, whatever the watermark (files carry old and late activities alike, so a late
    export is never lost); the store drops what it has. A file read to the end before and unchanged since
    (same size and modification time, see `skip_unchanged`) is not read again; one that grew is read again."""

    def __init__(self, config: SourceConfig, secrets: dict[str, str] | None = None, **_: Any):
        self.name = config.name
        self.pattern = config.path or ""
        self.page_lines = config.page_size or PAGE_LINES
        self._known: dict[str, tuple[int, int]] = {}
        self.completed: list[FileRead] = []
        self.skipped = 0

    def skip_unchanged(self, known: dict[str, tuple[int, int]]) -> None:
        """Files read before: path -> (size, mtime_ns) as they were then."""
        self._known = dict(known)

    def pages(self, since: datetime | None) -> Iterator[Page]:
        files = _files(self.pattern)
        if not files:
            raise PermanentError(f"{self.name}: no .jsonl files at {self.pattern!r}")
        latest: datetime | None = None
        page = Page()
        for path in files:
            key, stat = str(path.resolve()), path.stat()
            if self._known.get(key) == (stat.st_size, stat.st_mtime_ns):
                self.skipped += 1
                continue
            lines = 0
            with path.open("r", encoding="utf-8", errors="replace") as handle:
                for number, text in enumerate(handle, start=1):
                    lines = number
                    if not text.strip():
                        continue
                    self._read_line(page, path.name, number, text.rstrip("\n"))
                    if page.fetched >= self.page_lines:
                        latest = newest(latest, page.activities)
                        yield page
                        page = Page()
            # Listed once its last page has been handed on: the caller notes it when everything is committed.
            self.completed.append(FileRead(key, stat.st_size, stat.st_mtime_ns, lines))
        page.checkpoint = newest(latest, page.activities)
        yield page

    def _read_line(self, page: Page, file_name: str, number: int, text: str) -> None:
        page.fetched += 1
        try:
            line = json.loads(text)
        except json.JSONDecodeError as exc:
            page.rejected.append(Rejection(self.name, None, f"{file_name}:{number}: invalid JSON: {exc.msg}", text))
            return
        if not isinstance(line, dict):
            page.rejected.append(Rejection(self.name, None, f"{file_name}:{number}: a line must be a JSON object", text))
            return
        source = str(line.get("source") or self.name)
        record = build_activity(
            source=source,
            external_id=line.get("id"),
            type_name=line.get("type"),
            occurred_at=line.get("occurred_at"),
            raw=text,
            email=line.get("email"),
            source_contact_id=line.get("contact_id"),
            asset=line.get("asset"),
            campaign=line.get("campaign"),
            properties=line.get("properties") if isinstance(line.get("properties"), dict) else None,
        )
        if isinstance(record, Rejection):
            page.rejected.append(Rejection(record.source, record.external_id, f"{file_name}:{number}: {record.reason}", text))
            return
        page.activities.append(record)
        person = _person(source, line)
        if person is not None:
            page.people.append(person)

    def close(self) -> None:
        pass

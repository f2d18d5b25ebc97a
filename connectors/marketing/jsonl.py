"""Activities from JSON Lines files, so any tool's export can be loaded (format in docs/sources.md)."""

from __future__ import annotations

import codecs
import glob
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator

import orjson

from config.sources import SourceConfig
from connectors.http import PermanentError
from connectors.marketing.base import FileRead, Page, newest
from connectors.records import convert_guarded, json_problem
from domain.activity import (
    PERSON_FIELDS, ActivityRecord, PersonRecord, Rejection, build_activity, employee_count, normalize_email,
    person_problem,
)

PAGE_LINES = 5000


def _files(pattern: str) -> list[Path]:
    path = Path(pattern)
    if path.is_dir():
        return sorted(path.glob("*.jsonl"))
    if path.is_file():
        return [path]
    return sorted(Path(p) for p in glob.glob(pattern))


def _person(source: str, line: dict[str, Any], text: str) -> PersonRecord | None:
    fields = {name: line.get(name) for name in PERSON_FIELDS if line.get(name) not in (None, "")}
    if not fields:
        return None
    if "company_size" in fields:
        fields["company_size"] = employee_count(fields["company_size"])
    contact = line.get("contact_id")
    contact = None if contact in (None, "") else contact if isinstance(contact, str) else str(contact)
    return PersonRecord(source, contact, normalize_email(line.get("email")), **fields, raw=text)


def _text(raw: bytes) -> str | bytes:
    """A line as text when it is UTF-8, else its bytes: either way kept as it came."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw


def read_line(name: str, raw: bytes, where: str = "") -> tuple[ActivityRecord | None, PersonRecord | None,
                                                                list[Rejection]]:
    """One line of the format: its activity, the person's details it carries, and what was refused (`where`, e.g.
    "file:line: ", starts each reason). A person whose details cannot be stored is refused on its own: the
    activity stands."""
    try:
        line = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return None, None, [Rejection(name, None, f"{where}invalid JSON: {json_problem(raw, exc)}", _text(raw))]
    text = raw.decode("utf-8")  # orjson read it, so it is UTF-8
    if not isinstance(line, dict):
        return None, None, [Rejection(name, None, f"{where}a line must be a JSON object", text)]
    result = convert_guarded(name, lambda record: _convert(name, record, text), line)
    if isinstance(result, Rejection):
        return None, None, [Rejection(result.source, result.external_id, where + result.reason, text)]
    record, person = result
    problem = person_problem(person) if person is not None else None
    if problem:
        return record, None, [Rejection(name, person.source_contact_id, f"{where}person details refused: {problem}",
                                        text)]
    return record, person, []


def _convert(name: str, line: dict[str, Any], text: str) -> tuple[ActivityRecord, PersonRecord | None] | Rejection:
    record = build_activity(
        source=line.get("source") or name,
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
        return record
    return record, _person(record.source, line, text)


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
            with path.open("rb") as handle:
                for number, raw in enumerate(handle, start=1):
                    lines = number
                    if number == 1 and raw.startswith(codecs.BOM_UTF8):
                        raw = raw[len(codecs.BOM_UTF8):]  # says how the file is encoded; not part of the data
                    raw = raw.rstrip(b"\r\n")
                    if not raw.strip():
                        continue
                    self._read_line(page, path.name, number, raw)
                    if page.fetched >= self.page_lines:
                        latest = newest(latest, page.activities)
                        yield page
                        page = Page()
            # Listed once its last page has been handed on: the caller notes it when everything is committed.
            self.completed.append(FileRead(key, stat.st_size, stat.st_mtime_ns, lines))
        page.checkpoint = newest(latest, page.activities)
        yield page

    def _read_line(self, page: Page, file_name: str, number: int, raw: bytes) -> None:
        page.fetched += 1
        activity, person, rejections = read_line(self.name, raw, f"{file_name}:{number}: ")
        if activity is not None:
            page.activities.append(activity)
        if person is not None:
            page.people.append(person)
        page.rejected += rejections

    def close(self) -> None:
        pass

"""Checking a YAML config file read with its line numbers: every problem is collected with its line and all are
raised together, each naming the file, the line and what is wrong (used by routing.yaml and sla.yaml)."""

from __future__ import annotations

import difflib
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

from config.loading import ConfigError, read_yaml
# The teams file's loader notes the line of every key and list item and each key given twice: the same is needed here.
from config.teams import _item_line, _line, _TeamsLoader

E = TypeVar("E", bound=StrEnum)


class ConfigProblems(ConfigError):
    """A config file is invalid: one line per problem, each naming the file, the line and the problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def read_document(path: Path, text: str | None = None) -> Any:
    """The YAML of `path` (or `text`, named `path`), every mapping and list knowing its lines."""
    return read_yaml(path, _TeamsLoader, text)


def line_of(node: Any, key: Any = None) -> int | None:
    """The line of `key` in a mapping read by read_document (of the mapping itself without a key, or when the key
    is not there)."""
    return _line(node, key)


def key_line(node: Any, key: Any) -> int | None:
    """The line of `key` in a mapping read by read_document; None when the key is not there."""
    return getattr(node, "key_lines", {}).get(key)


class FileProblems:
    """The problems found in one file, and the small checks that find them."""

    def __init__(self, path: Path, error: type[ConfigProblems] = ConfigProblems) -> None:
        self.path, self.error = path, error
        self.found: list[tuple[int, str]] = []

    def add(self, line: int | None, message: str) -> None:
        self.found.append((line or 0, message))

    def raise_any(self) -> None:
        if self.found:
            ordered = sorted(dict.fromkeys(self.found), key=lambda p: p[0])
            raise self.error([f"{self.path}:{line}: {message}" if line else f"{self.path}: {message}"
                              for line, message in ordered])

    def keys(self, node: dict, known: tuple[str, ...], what: str) -> None:
        """Keys given twice and keys not in `known` (with the closest known one as a hint)."""
        self.repeated_keys(node, what)
        for key in node:
            if key not in known:
                close = difflib.get_close_matches(str(key), known, n=1)
                hint = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(known)}"
                self.add(line_of(node, key), f"unknown key {key!r} in {what} ({hint})")

    def repeated_keys(self, node: dict, what: str) -> None:
        for key, line, first in getattr(node, "duplicates", []):
            self.add(line, f"{key!r} is given twice in {what} (first on line {first}); say it once")

    def mapping(self, value: Any, line: int | None, what: str) -> dict | None:
        if isinstance(value, dict):
            return value
        self.add(line, f"{what} must be a mapping, not {shown(value)}")
        return None

    def items(self, node: dict, key: str) -> list[tuple[Any, int | None]]:
        """A list's items with their lines; one value alone is a list of one; absent or null is none."""
        value, line = node.get(key), line_of(node, key)
        if value is None:
            return []
        if not isinstance(value, list):
            return [(value, line)]
        return [(item, _item_line(value, index, line)) for index, item in enumerate(value)]

    def text(self, value: Any, line: int | None, what: str) -> str | None:
        if isinstance(value, bool):
            self.add(line, f"{what}: {value!r} was read as yes/no; put it in quotes")
            return None
        if value is None or isinstance(value, (dict, list)) or not str(value).strip():
            self.add(line, f"{what} must be text, not {shown(value)}")
            return None
        return str(value).strip()

    def texts(self, node: dict, key: str, what: str) -> tuple[str, ...]:
        return tuple(t for item, line in self.items(node, key) if (t := self.text(item, line, what)) is not None)

    def flag(self, node: dict, key: str, what: str, default: bool) -> bool:
        value = node.get(key, default)
        if not isinstance(value, bool):
            self.add(line_of(node, key), f"{what} {key} must be true or false, not {shown(value)}")
            return default
        return value

    def choice(self, node: dict, key: str, what: str, kind: type[E], default: E) -> E:
        value = node.get(key, default.value)
        try:
            return kind(str(value).strip().lower()) if isinstance(value, str) else kind(value)
        except ValueError:
            known = ", ".join(k.value for k in kind)
            self.add(line_of(node, key), f"{what} {key} must be one of {known}, not {shown(value)}")
            return default

    def hours(self, node: dict, key: str, what: str, default: Decimal | None, *, zero: bool = False) -> Decimal | None:
        """A number of hours (fractions allowed), above zero unless `zero`."""
        if key not in node:
            return default
        value, line = node[key], line_of(node, key)
        try:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise InvalidOperation
            hours = Decimal(str(value))
            if not hours.is_finite() or hours < 0 or (hours == 0 and not zero) or hours > 24 * 366:
                raise InvalidOperation
        except InvalidOperation:
            least = "zero or more" if zero else "above zero"
            self.add(line, f"{what} {key} must be a number of hours {least} (at most a year), not {shown(value)}")
            return default
        return hours

    def whole(self, node: dict, key: str, what: str, default: int) -> int:
        value = node.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100:
            self.add(line_of(node, key), f"{what} {key} must be a whole number from 0 to 100, not {shown(value)}")
            return default
        return value


def shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:60] + "..."


def cell(value: Any) -> str:
    """A value as one markdown table cell: on one line, its pipes escaped."""
    return " ".join(str(value).split()).replace("|", "\\|") or " "


def table(header: tuple[str, ...], rows: list[tuple[Any, ...]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(value) for value in row) + " |" for row in rows]
    return "\n".join(lines)

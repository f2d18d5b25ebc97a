"""The per-record barrier at the edge: a page whose JSON does not parse whole is read record by record, and a
record that breaks its conversion becomes a quarantined rejection while the rest of its page goes on."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Iterator, TypeVar

import orjson

from domain.activity import Rejection, dump_raw

R = TypeVar("R")

REASON_LENGTH = 500


@dataclass(frozen=True, slots=True)
class Unreadable:
    """A record of a page that is not valid JSON on its own: its bytes as they came, and the parser's reason."""

    raw: bytes
    reason: str


def loads_page(content: bytes, records: str) -> Any:
    """The page's JSON. When the whole does not parse (a record nested too deep, a number past a double, a
    lone surrogate, bytes that are not UTF-8), the member `records` of the top-level object is read element by
    element instead, an element that does not parse becoming an `Unreadable`; if even that cannot be done, the
    page's own error is raised."""
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError as whole:
        try:
            return _read_apart(content, records)
        except ValueError:
            raise whole from None


def loads_body(content: bytes) -> Any:
    """A webhook body's JSON. When the whole does not parse, a top-level array is read element by element, and a
    top-level object member by member (a member that is an array element by element), an element that does not
    parse becoming an `Unreadable`; if even that cannot be done, the body's own error is raised."""
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError as whole:
        try:
            return _body_apart(content)
        except ValueError:
            raise whole from None


def reject_unreadable(source: str, record: Unreadable, where: str = "") -> Rejection:
    return Rejection(source, None, f"{where}not valid JSON: {record.reason}", record.raw)


def convert_guarded(source: str, convert: Callable[[Any], R], record: Any) -> R | Rejection:
    """`convert(record)`, or a rejection carrying the record when it is unreadable or its conversion raises:
    whatever breaks on one record must not take its page down."""
    if isinstance(record, Unreadable):
        return reject_unreadable(source, record)
    try:
        return convert(record)
    except Exception as exc:  # noqa: BLE001 - any failure of one record is that record's, quarantined with it
        return Rejection(source, None, failure_reason(exc), dump_raw(record))


def failure_reason(exc: BaseException) -> str:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"could not be read: {type(exc).__name__}: {first}"[:REASON_LENGTH]


# ---------------------------------------------------------------- reading a page apart, without recursion

_WS = re.compile(rb"[ \t\r\n]*")
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.S)
_STRUCTURE = re.compile(rb'[\[\]{}"]')
_SCALAR_END = re.compile(rb"[,\]} \t\r\n]")
_OPEN = frozenset(b"[{")


def _skip_ws(data: bytes, at: int) -> int:
    return _WS.match(data, at).end()


def _value_end(data: bytes, start: int) -> int:
    """Where the JSON value starting at `start` ends, found by counting brackets outside strings: a value nested
    any depth costs no recursion."""
    if start >= len(data):
        raise ValueError("a value is missing")
    first = data[start]
    if first == 0x22:  # '"'
        match = _STRING.match(data, start)
        if match is None:
            raise ValueError("an unterminated string")
        return match.end()
    if first not in _OPEN:
        match = _SCALAR_END.search(data, start)
        return match.start() if match else len(data)
    depth, at = 0, start
    while True:
        match = _STRUCTURE.search(data, at)
        if match is None:
            raise ValueError("an unterminated array or object")
        char = data[match.start()]
        if char == 0x22:
            string = _STRING.match(data, match.start())
            if string is None:
                raise ValueError("an unterminated string")
            at = string.end()
            continue
        depth += 1 if char in _OPEN else -1
        at = match.end()
        if depth == 0:
            return at


def _items(data: bytes, start: int) -> Iterator[tuple[bytes | None, int, int]]:
    """(member name or None, start, end) of each element of the array or object that starts at `start`."""
    closing = 0x5D if data[start] == 0x5B else 0x7D
    at = _skip_ws(data, start + 1)
    if at < len(data) and data[at] == closing:
        return
    while True:
        name = None
        if closing == 0x7D:
            key = _STRING.match(data, at)
            if key is None:
                raise ValueError("an object member without a name")
            name = key.group()
            at = _skip_ws(data, key.end())
            if data[at:at + 1] != b":":
                raise ValueError("a member name without ':'")
            at = _skip_ws(data, at + 1)
        end = _value_end(data, at)
        yield name, at, end
        at = _skip_ws(data, end)
        if data[at:at + 1] == b",":
            at = _skip_ws(data, at + 1)
        elif at < len(data) and data[at] == closing:
            return
        else:
            raise ValueError("elements not separated by ','")


def _read_apart(data: bytes, records: str) -> dict:
    start = _skip_ws(data, 0)
    if data[start:start + 1] != b"{":
        raise ValueError("the page is not a JSON object")
    page: dict[str, Any] = {}
    wanted = orjson.dumps(records)
    for name, begin, end in _items(data, start):
        if name != wanted:
            page[orjson.loads(name)] = orjson.loads(data[begin:end])  # the envelope must parse: else the page fails
            continue
        if data[begin] not in _OPEN:
            page[records] = orjson.loads(data[begin:end])
            continue
        container = data[begin]
        elements = [(key, _element(data[a:b])) for key, a, b in _items(data, begin)]
        page[records] = [value for _, value in elements] if container == 0x5B else \
            {_member_name(key): value for key, value in elements}
    return page


def _body_apart(data: bytes) -> list | dict:
    start = _skip_ws(data, 0)
    if data[start:start + 1] not in (b"[", b"{"):
        raise ValueError("the body is not a JSON array or object")
    if data[_skip_ws(data, _value_end(data, start)):].strip():
        raise ValueError("more after the body's value")
    if data[start] == 0x5B:
        return [_element(data[a:b]) for _, a, b in _items(data, start)]
    body: dict[str, Any] = {}
    for name, a, b in _items(data, start):
        body[_member_name(name)] = [_element(data[x:y]) for _, x, y in _items(data, a)] if data[a] == 0x5B \
            else _element(data[a:b])
    return body


def _element(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return Unreadable(raw, json_problem(raw, exc))


def json_problem(raw: bytes, exc: orjson.JSONDecodeError) -> str:
    """The parser's reason, or, for bytes that are not UTF-8, where they stop being UTF-8 (orjson reports those
    as surrogates)."""
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as bad:
        return f"not UTF-8 text (byte 0x{raw[bad.start]:02x} at offset {bad.start})"
    return str(exc)


def _member_name(key: bytes) -> str:
    try:
        return orjson.loads(key)
    except orjson.JSONDecodeError:
        return key.decode("utf-8", "backslashreplace")

"""Text from people and tools made harmless to show: control characters visible, Markdown syntax inert."""

from __future__ import annotations

import re

# What a terminal would obey rather than show: C0 and C1 controls (ESC starts every escape sequence, OSC
# hyperlinks and titles among them; BEL, backspace and a carriage return rewrite what is on screen), DEL,
# the Unicode line and paragraph separators, and the bidi controls that reorder what follows (U+202E).
_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\r": "\\r", "\x1b": "\\x1b"}
# What Markdown would read as a link, an image, HTML, an entity or emphasis instead of showing it: a backslash
# escapes each. An underscore inside a word makes no emphasis (snake_case stays as it is written).
_MARKDOWN = re.compile(r"[\\*\[\]<>&~]|(?<![0-9A-Za-z])_|_(?![0-9A-Za-z])")


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    return _NAMED.get(char) or (f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}")


def shown(text: str) -> str:
    """`text` with every control character written out as its escape (ESC as `\\x1b`, U+202E as `\\u202e`), so
    that it is seen, never obeyed and never silently dropped; line breaks and tabs are kept."""
    return _CONTROLS.sub(_escape, text)


def cell(text: str | None) -> str:
    """A table cell's text, shown as it is: its controls written out (shown), its Markdown syntax escaped, and a
    '|' (which would end the cell) and a line break (which would end the row) as '/' and a space."""
    inert = _MARKDOWN.sub(lambda m: "\\" + m.group(), (text or "").replace("|", "/").replace("\n", " "))
    return shown(inert)

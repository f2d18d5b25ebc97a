"""Markdown for the artifacts and the CLI: text from people and tools made safe for a table cell."""

from __future__ import annotations


def cell(text: str | None) -> str:
    """A table cell's text: a '|' would end the cell and a line break the row, so they become '/' and a space."""
    return (text or "").replace("|", "/").replace("\n", " ")

"""Which canonical activity a form submission is, decided by the form's name."""

from __future__ import annotations

import re
from dataclasses import dataclass

from domain.activity import ActivityType


@dataclass(frozen=True)
class FormRule:
    """`template` matches a form name: `*` is any text, `{asset}` is any text that becomes the asset name."""

    template: str
    type: ActivityType

    def compile(self) -> re.Pattern[str]:
        parts = re.split(r"(\*|\{asset\})", self.template)
        pattern = "".join(
            ".*?" if part == "*" else "(?P<asset>.+?)" if part == "{asset}" else re.escape(part) for part in parts
        )
        return re.compile(f"^{pattern}$", re.IGNORECASE)


class FormTypes:
    """First matching rule wins; an unmatched form is a plain form fill named after the form."""

    def __init__(self, rules: list[FormRule]):
        self._rules = [(rule.compile(), rule.type) for rule in rules]
        self._cache: dict[str, tuple[ActivityType, str]] = {}

    def classify(self, form_name: str) -> tuple[ActivityType, str]:
        hit = self._cache.get(form_name)
        if hit is None:
            hit = (ActivityType.FORM_FILL, form_name)
            for pattern, kind in self._rules:
                match = pattern.match(form_name.strip())
                if match:
                    asset = match.groupdict().get("asset")
                    hit = (kind, asset.strip() if asset else form_name)
                    break
            if len(self._cache) < 10_000:
                self._cache[form_name] = hit
        return hit

"""Request-level fault switches of a stand-in: rate limits, server errors, slow responses, expiring tokens; and
its webhooks' delivery faults (sent twice, held back, signed wrong)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, fields


@dataclass
class RequestFaults:
    """Every N-th request of a kind misbehaves (0 = never); a retried request is the next one, so it passes."""

    rate_limit_every: int = 0
    server_error_every: int = 0
    slow_ms: int = 0
    expire_token_every: int = 0
    token_ttl_seconds: float = 3600.0
    empty_page_every: int = 0
    webhook_twice_every: int = 0  # every N-th delivery is posted a second time, as a tool's duplicate
    webhook_late_every: int = 0  # every N-th delivery is held back webhook_late_seconds before its first post
    webhook_late_seconds: float = 5.0
    webhook_bad_signature_every: int = 0  # every N-th delivery is signed with a wrong secret
    _counts: dict[str, int] = field(default_factory=dict, repr=False, compare=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def hit(self, switch: str) -> bool:
        """Count one request against a switch (`rate_limit`, `server_error`, ...) and say whether it fires now."""
        every = getattr(self, f"{switch}_every")
        if every <= 0:
            return False
        with self._lock:
            n = self._counts.get(switch, 0) + 1
            self._counts[switch] = n
        return n % every == 0

    def fired(self, switch: str) -> int:
        """How many times a switch has fired so far (tests use it to prove the fault was exercised)."""
        every = getattr(self, f"{switch}_every")
        return self._counts.get(switch, 0) // every if every > 0 else 0

    def update(self, **changes) -> None:
        known = {f.name for f in fields(self) if not f.name.startswith("_")}
        unknown = set(changes) - known
        if unknown:
            raise ValueError(f"unknown fault switches: {sorted(unknown)}")
        for name, value in changes.items():
            setattr(self, name, type(getattr(self, name))(value))

    def as_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self) if not f.name.startswith("_")}

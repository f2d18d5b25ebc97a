"""What a CRM connector does for the sync, whichever CRM: authenticate, pull changes since watermarks, find
people, write records with a result for each, and say how much of the API allowance is left."""

from __future__ import annotations

from datetime import datetime
from typing import Mapping, Protocol, Sequence

from domain.crm import ApiUsage, CrmChanges, CrmObject, CrmPerson, CrmWrite, WriteResult

# The kinds of records a pull reads, each with its own watermark.
PULLED = ("users", "accounts", "leads", "contacts", "opportunities", "tasks", "events")


class CrmClient(Protocol):
    name: str

    def authenticate(self) -> None:
        """Get a session (a token); raises PermanentError when the credentials are refused."""
        ...

    def pull(self, since: Mapping[str, datetime | None]) -> CrmChanges:
        """Every record of each kind in PULLED changed at or after its watermark (all of them when None),
        deleted and merged ones included; a record the connector cannot read is in `refused`, not raised."""
        ...

    def find_people(self, keys: Sequence[str] = (), emails: Sequence[str] = (), ids: Sequence[str] = ()
                    ) -> list[CrmPerson]:
        """Lead and contact records carrying one of Handoff's keys, one of the e-mail addresses (compared as
        the CRM compares them: without case) or one of the ids; deleted ones left out."""
        ...

    def read_handoff_values(self, object: CrmObject, ids: Sequence[str]) -> dict[str, dict]:
        """Handoff's fields (and the owner) as the CRM holds them now, by record id: what a write cut short left
        there."""
        ...

    def queue_ids(self, names: Sequence[str]) -> dict[str, str]:
        """The ids of the CRM's lead queues of these names (a lead's owner may be a queue); an unknown name is absent."""
        ...

    def write(self, writes: Sequence[CrmWrite]) -> list[WriteResult]:
        """Write the records, a result for each in the same order; never raises for one record's failure. A
        create whose answer was lost is looked up by its key before it is sent again."""
        ...

    @property
    def usage(self) -> ApiUsage | None:
        """The allowance as of the last response (None before the first)."""
        ...

    @property
    def calls(self) -> Mapping[str, int]:
        """API calls made, by kind ("query", "query_more", "composite", "bulk", "token", ...)."""
        ...

    def close(self) -> None: ...

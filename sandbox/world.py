"""The deterministic synthetic world behind the stand-ins: people, their journeys over weeks, and data faults.

The same seed and size always give the same people and events; fault rates are drawn from their own random
stream, so switching faults on changes which records are damaged, never the good data underneath.
"""

from __future__ import annotations

import bisect
import random
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import cached_property
from typing import Callable

from sandbox import catalog

TOOLS = ("marketo", "hubspot", "mautic")

# What a person did, in the stand-ins' own words; each tool renders these in its wire format.
SUBSCRIBED = "subscribed"
EMAIL_OPENED = "email_opened"
EMAIL_CLICKED = "email_clicked"
EMAIL_BOUNCED = "email_bounced"
UNSUBSCRIBED = "unsubscribed"
PAGE_VISITED = "page_visited"
WHITEPAPER_DOWNLOADED = "whitepaper_downloaded"
WEBINAR_REGISTERED = "webinar_registered"
WEBINAR_ATTENDED = "webinar_attended"
DEMO_REQUESTED = "demo_requested"
TRIAL_STARTED = "trial_started"
CONTACT_SALES = "contact_sales"
FORM_FILLED = "form_filled"

HAND_RAISES = (DEMO_REQUESTED, TRIAL_STARTED, CONTACT_SALES)
EMAIL_KINDS = (EMAIL_OPENED, EMAIL_CLICKED)

# Data faults an event can carry: each tool decides how the damage looks on its wire.
DUPLICATE = "duplicate"
MALFORMED = ("unknown_type", "no_identity", "bad_time", "oversized")

DEFAULT_END = datetime(2026, 11, 2, tzinfo=timezone.utc)


@dataclass(frozen=True)
class WorldSpec:
    seed: int = 7
    people: int = 200
    activities: int = 2000
    weeks: int = 8
    end: datetime = DEFAULT_END
    malformed_rate: float = 0.0
    duplicate_rate: float = 0.0
    late_rate: float = 0.0
    late_by_hours: float = 2.0
    two_tool_share: float = 0.15


@dataclass(frozen=True, slots=True)
class Person:
    index: int
    email: str
    first_name: str
    last_name: str
    company: str
    title: str
    industry: str
    company_size: int
    country: str
    channel: str
    product_interest: str
    fits_icp: bool
    tools: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Event:
    id: int
    person: int
    tool: str
    kind: str
    asset: str | None
    campaign: str | None
    ts: int
    available_ts: int
    fault: str | None = None

    @property
    def occurred_at(self) -> datetime:
        return datetime.fromtimestamp(self.ts, tz=timezone.utc)

    @property
    def malformed(self) -> bool:
        return self.fault in MALFORMED


def _epoch(moment: datetime) -> int:
    return int(moment.timestamp())


@dataclass
class World:
    spec: WorldSpec
    people: list[Person]
    events: list[Event]
    clock: int = 0
    _by_tool: dict[str, list[Event]] = field(default_factory=dict, repr=False)
    _indexers: list[Callable[[Event], None]] = field(default_factory=list, repr=False)
    _watchers: list[Callable[[list[Event]], None]] = field(default_factory=list, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        if not self.clock:
            self.clock = _epoch(self.spec.end)
        for tool in TOOLS:
            self._by_tool[tool] = [e for e in self.events if e.tool == tool]

    @property
    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock, tz=timezone.utc)

    def advance(self, hours: float) -> None:
        """Move the stand-ins' clock: late activities whose time has come become visible (and are told to the
        watchers, as a tool's webhooks would tell them)."""
        before = self.clock
        self.clock += int(hours * 3600)
        appeared = [e for e in self.events if before < e.available_ts <= self.clock]
        if appeared:
            for watch in list(self._watchers):
                watch(sorted(appeared, key=lambda e: (e.available_ts, e.id)))

    def on_add(self, index: Callable[[Event], None]) -> None:
        """Call `index` with every event added from now on (a stand-in keeps its feeds with it)."""
        self._indexers.append(index)

    def watch(self, told: Callable[[list[Event]], None]) -> None:
        """Call `told` with the events that become visible from now on, added or revealed by the clock."""
        self._watchers.append(told)

    def add_event(self, person: Person, tool: str, kind: str, asset: str | None, campaign: str | None = None,
                  ts: int | None = None, tell: bool = True) -> Event:
        """A new activity of a person at the world's clock (or `ts`), visible at once to the tool's feeds and, with
        `tell`, told to the watchers (without, the caller tells what it wants to whom it wants)."""
        with self._lock:
            event = Event(self.events[-1].id + 1 if self.events else 1, person.index, tool, kind, asset, campaign,
                          self.clock if ts is None else ts, self.clock)
            self.events.append(event)
            bisect.insort(self._by_tool[tool], event, key=lambda e: (e.ts, e.id))
            if "_person_events" in self.__dict__:
                self._person_events.setdefault(person.index, []).append(event)
        for index in list(self._indexers):
            index(event)
        for watch in list(self._watchers) if tell else ():
            watch([event])
        return event

    def timeline(self, tool: str) -> list[Event]:
        """All of a tool's events, visible or not yet, oldest first (the same list every call: bisect it)."""
        return self._by_tool[tool]

    def tool_events(self, tool: str, since: datetime | None = None) -> list[Event]:
        """Events a tool shows now, oldest first, from `since` on; late ones appear once the clock passes them."""
        events = self._by_tool[tool]
        start = bisect.bisect_left(events, _epoch(since), key=lambda e: e.ts) if since else 0
        return [e for e in events[start:] if e.available_ts <= self.clock]

    @cached_property
    def _tool_people(self) -> dict[str, list[Person]]:
        return {tool: [p for p in self.people if tool in p.tools] for tool in TOOLS}

    def tool_people(self, tool: str) -> list[Person]:
        return self._tool_people[tool]

    def email_in(self, person: Person, tool: str) -> str:
        """The address as a tool stores it: the second tool of a shared person keeps the sign-up's capitals."""
        if len(person.tools) > 1 and tool == person.tools[1]:
            local, domain = person.email.split("@")
            return f"{local.title()}@{domain.capitalize()}"
        return person.email

    def first_seen(self, person: Person, tool: str) -> datetime:
        """When the tool first knew the person (their earliest event there, or the world's start)."""
        times = [e.ts for e in self._person_events.get(person.index, ()) if e.tool == tool]
        return datetime.fromtimestamp(min(times) if times else _epoch(self.spec.end - timedelta(weeks=self.spec.weeks)), tz=timezone.utc)

    @cached_property
    def _person_events(self) -> dict[int, list[Event]]:
        grouped: dict[int, list[Event]] = {}
        for event in self.events:
            grouped.setdefault(event.person, []).append(event)
        return grouped

    def expected(self, tool: str | None = None) -> tuple[list[Event], list[Event]]:
        """(good, malformed) events visible now: what a correct ingest stores and what it quarantines."""
        tools = [tool] if tool else list(TOOLS)
        visible = [e for t in tools for e in self.tool_events(t)]
        return [e for e in visible if not e.malformed], [e for e in visible if e.malformed]


def _make_person(index: int, rng: random.Random, spec: WorldSpec) -> Person:
    fits = rng.random() < 0.35
    first, last = rng.choice(catalog.FIRST_NAMES), rng.choice(catalog.LAST_NAMES)
    company = rng.choice(catalog.COMPANY_WORDS) + rng.choice(catalog.COMPANY_SUFFIXES)
    if fits:
        domain = f"{company.lower()}.example"
        industry, title = rng.choice(catalog.FIT_INDUSTRIES), rng.choice(catalog.FIT_TITLES)
        size, country = rng.choice((200, 350, 800, 1500, 4000)), rng.choice(catalog.FIT_COUNTRIES)
    else:
        roll = rng.random()
        domain = (
            rng.choice(catalog.FREE_MAIL) if roll < 0.4
            else catalog.COMPETITOR_DOMAINS[0] if roll < 0.43
            else f"{company.lower()}.example"
        )
        industry, title = rng.choice(catalog.OTHER_INDUSTRIES), rng.choice(catalog.OTHER_TITLES)
        size, country = rng.choice((1, 5, 12, 40, 90)), rng.choice(catalog.OTHER_COUNTRIES + catalog.FIT_COUNTRIES)
    email = f"{first.lower()}.{last.lower()}{index}@{domain}"
    roll = rng.random()
    if roll < spec.two_tool_share:
        tools = tuple(rng.sample(TOOLS, 2))
    else:
        tools = (TOOLS[0],) if roll < 0.6 else (TOOLS[1],) if roll < 0.85 else (TOOLS[2],)
    return Person(
        index=index, email=email, first_name=first, last_name=last, company=company.capitalize(), title=title,
        industry=industry, company_size=size, country=country, channel=rng.choice(catalog.CHANNELS),
        product_interest=rng.choice(catalog.PRODUCTS), fits_icp=fits, tools=tools,
    )


def _journey(person: Person, count: int, rng: random.Random, start: int, span: int) -> list[tuple[int, str, str | None, str | None]]:
    """A plausible sequence of `count` actions: awareness, then consideration, then maybe a hand-raise."""
    steps: list[tuple[int, str, str | None, str | None]] = []
    first = start + rng.randrange(max(1, span // 2))
    # The journey's moments, spread over what is left of the span, in order.
    moments = sorted(first + rng.randrange(max(1, start + span - first)) for _ in range(count))
    stage, registered, emails_stop, raised = 0, None, False, False
    advance = 0.25 if person.fits_icp else 0.08
    for n, t in enumerate(moments):
        if n == 0 and rng.random() < 0.5:
            steps.append((t, SUBSCRIBED, catalog.NEWSLETTER_FORM, None))
            continue
        roll = rng.random()
        if not emails_stop and roll < 0.45:
            campaign, name = rng.choice(catalog.EMAILS)
            if rng.random() < 0.01:
                steps.append((t, EMAIL_BOUNCED, name, campaign))
                emails_stop = True
            elif rng.random() < 0.02:
                steps.append((t, UNSUBSCRIBED, name, campaign))
                emails_stop = True
            else:
                steps.append((t, EMAIL_CLICKED if rng.random() < 0.3 else EMAIL_OPENED, name, campaign))
        elif stage == 0:
            if rng.random() < 0.15:
                steps.append((t, WHITEPAPER_DOWNLOADED, rng.choice(catalog.WHITEPAPERS), None))
            else:
                steps.append((t, PAGE_VISITED, rng.choice(catalog.AWARENESS_PAGES), None))
            stage += rng.random() < advance
        elif stage == 1:
            roll = rng.random()
            if registered and roll < 0.3:
                steps.append((t, WEBINAR_ATTENDED, registered, None))
                registered = None
            elif roll < 0.45:
                registered = rng.choice(catalog.WEBINARS)
                steps.append((t, WEBINAR_REGISTERED, registered, None))
            elif roll < 0.65:
                steps.append((t, WHITEPAPER_DOWNLOADED, rng.choice(catalog.WHITEPAPERS), None))
            else:
                steps.append((t, PAGE_VISITED, rng.choice(catalog.CONSIDERATION_PAGES), None))
            stage += rng.random() < advance
        else:
            if not raised and rng.random() < (0.35 if person.fits_icp else 0.08):
                kind = rng.choice(HAND_RAISES)
                form = {DEMO_REQUESTED: catalog.DEMO_FORM, TRIAL_STARTED: catalog.TRIAL_FORM}.get(kind, catalog.CONTACT_SALES_FORM)
                steps.append((t, kind, form, None))
                raised = True
            else:
                steps.append((t, PAGE_VISITED, rng.choice(catalog.DECISION_PAGES), None))
    return steps


def _counts(people: int, activities: int, rng: random.Random) -> list[int]:
    """Events per person: skewed (a few very active people), summing exactly to `activities`."""
    weights = [rng.paretovariate(2.0) for _ in range(people)]
    scale = activities / sum(weights)
    counts = [max(1, int(w * scale)) for w in weights]
    diff = activities - sum(counts)
    order = sorted(range(people), key=lambda i: -weights[i])
    i = 0
    while diff != 0:
        j = order[i % people]
        if diff > 0:
            counts[j] += 1
            diff -= 1
        elif counts[j] > 1:
            counts[j] -= 1
            diff += 1
        i += 1
    return counts


def generate(spec: WorldSpec = WorldSpec()) -> World:
    if spec.activities < spec.people:
        raise ValueError("need at least one activity per person")
    master = random.Random(spec.seed)
    end = _epoch(spec.end)
    span = spec.weeks * 7 * 24 * 3600
    start = end - span
    people = [_make_person(i, random.Random(f"{spec.seed}:p:{i}"), spec) for i in range(spec.people)]
    counts = _counts(spec.people, spec.activities, master)
    raw: list[tuple[int, int, str, str, str | None, str | None]] = []
    for person, count in zip(people, counts):
        rng = random.Random(f"{spec.seed}:j:{person.index}")
        for t, kind, asset, campaign in _journey(person, count, rng, start, span):
            tool = person.tools[0] if len(person.tools) == 1 else rng.choice(person.tools)
            raw.append((min(t, end - 1), person.index, tool, kind, asset, campaign))
    raw.sort(key=lambda r: (r[0], r[1]))
    faults = random.Random(f"{spec.seed}:faults")
    late_by = int(spec.late_by_hours * 3600)
    events: list[Event] = []
    malformed_seen = 0
    for eid, (t, person_index, tool, kind, asset, campaign) in enumerate(raw, start=1):
        roll, late_roll = faults.random(), faults.random()
        fault = None
        if roll < spec.malformed_rate:
            fault = MALFORMED[malformed_seen % len(MALFORMED)]
            malformed_seen += 1
        elif roll < spec.malformed_rate + spec.duplicate_rate:
            fault = DUPLICATE
        available = t + late_by if late_roll < spec.late_rate else t
        events.append(Event(eid, person_index, tool, kind, asset, campaign, t, available, fault))
    return World(spec=spec, people=people, events=events)

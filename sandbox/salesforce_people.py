"""The people at work in the Salesforce stand-in: reps who call, e-mail, meet, convert and recycle leads, and an admin.

Everything a person will do with a record is drawn once, when its owner is set, from the world's seed, the record's
id, the owner and that moment; the org then plays the steps whose time has come whenever the world's clock has moved
(before answering any request). So the org at a given clock is the same however many requests came in between.
A step is skipped when the record changed under it (another owner, a status the rep did not leave, deleted).
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from sandbox import catalog
from sandbox.salesforce_schema import LEAD_STATUSES, OPPORTUNITY_STAGES, day_of

if TYPE_CHECKING:
    from sandbox.salesforce_org import Org

HOUR, DAY = 3600, 86400
OPEN, WORKING, NURTURING, CONVERTED, NOT_CONVERTED = LEAD_STATUSES
RECYCLE_REASONS = ("No budget this year", "Not the decision maker", "Timing - revisit next quarter",
                   "No response after 3 attempts", "Using a competitor, contract ends next year")
CALL_NOTES = ("Left a voicemail, will try again", "Spoke briefly, asked for a follow-up next week",
              "Qualified: budget and timeline confirmed", "Gatekeeper, sent details by e-mail")


@dataclass
class WorkRates:
    """How reps behave; changing them affects plans made from then on."""

    first_touch_same_day: float = 0.55  # of leads a rep owns: first call / e-mail / meeting within the working day
    first_touch_late: float = 0.30  # after one to ten days; the rest are never touched
    meeting_share: float = 0.2  # first touches that are a booked meeting (an Event) rather than a Task
    email_share: float = 0.35  # touches that are an e-mail rather than a call
    second_touch: float = 0.5
    convert: float = 0.25  # outcomes of a touched lead; what is left stays Working - Contacted
    nurture: float = 0.2
    close_unconverted: float = 0.15
    claim_from_queue: float = 0.7  # queue leads a rep picks up within three days
    win: float = 0.45  # opportunities won; the rest are lost at some stage

    def update(self, **changes) -> None:
        known = {f.name for f in fields(self)}
        unknown = set(changes) - known
        if unknown:
            raise ValueError(f"unknown rates: {sorted(unknown)}")
        for name, value in changes.items():
            value = float(value)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1")
            setattr(self, name, value)

    def as_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def working_time(moment: int, timezone: str, rng: random.Random) -> int:
    """The moment itself if it falls in the person's working hours (9-18 on weekdays), else the next morning."""
    local = datetime.fromtimestamp(moment, ZoneInfo(timezone))
    if local.weekday() < 5 and 9 <= local.hour < 18:
        return moment
    day = local.date() + timedelta(days=1 if local.hour >= 18 else 0)
    while day.weekday() >= 5:
        day += timedelta(days=1)
    start = datetime(day.year, day.month, day.day, 9, tzinfo=ZoneInfo(timezone))
    return int(start.timestamp()) + rng.randrange(0, 2 * HOUR)


class Workforce:
    def __init__(self, org: "Org", rates: WorkRates):
        self.org, self.rates = org, rates
        self.queue: list[tuple] = []
        self.seq = 0

    # ------------------------------------------------------------ planning

    def schedule(self, due: int, record_id: str, plan_at: int, action: str, payload: dict) -> None:
        self.seq += 1
        heapq.heappush(self.queue, (due, record_id, plan_at, self.seq, action, payload))

    def _rep(self, user_id: str | None) -> dict | None:
        person = next((p for p in self.org.staff.values() if p["id"] == user_id), None)
        return person if person and person["role"] == "rep" and person["active"] else None

    def _rng(self, *parts) -> random.Random:
        return random.Random(":".join(str(p) for p in (self.org.world.spec.seed, *parts)))

    def owner_set(self, kind: str, record: dict, at: int) -> None:
        if record["IsDeleted"]:
            return
        if kind == "Opportunity":
            self._plan_opportunity(record, at)
        elif record["OwnerId"] == self.org.queue_id and record.get("Status") in (OPEN, WORKING):
            self._plan_claim(record, at)
        elif record.get("Status") in (OPEN, WORKING) and not record.get("IsConverted"):
            self._plan_lead(record, at)

    def _plan_claim(self, lead: dict, at: int) -> None:
        rng = self._rng("claim", lead["Id"], at)
        if rng.random() >= self.rates.claim_from_queue:
            return
        reps = [p for p in self.org.staff.values() if p["role"] == "rep" and p["active"]]
        liked = [p for p in reps if p["product_line"] == lead.get("Product_Line__c")] or reps
        rep = liked[rng.randrange(len(liked))]
        due = working_time(at + rng.randrange(HOUR, 3 * DAY), rep["timezone"], rng)
        self.schedule(due, lead["Id"], at, "claim", {"owner": lead["OwnerId"], "rep": rep["id"]})

    def _plan_lead(self, lead: dict, at: int) -> None:
        rep = self._rep(lead["OwnerId"])
        if rep is None:
            return  # managers, the admin, the integration user and inactive reps never work leads here
        rates, rng = self.rates, self._rng("lead", lead["Id"], rep["id"], at)
        roll = rng.random()
        if roll < rates.first_touch_same_day:
            first = at + rng.randrange(10 * 60, 6 * HOUR)
        elif roll < rates.first_touch_same_day + rates.first_touch_late:
            first = at + rng.randrange(30 * HOUR, 10 * DAY)
        else:
            return
        plan = {"owner": rep["id"]}
        first = working_time(first, rep["timezone"], rng)
        kind = "meeting" if rng.random() < rates.meeting_share else \
            "email" if rng.random() < rates.email_share else "call"
        self.schedule(first, lead["Id"], at, "touch", {**plan, "kind": kind, "note": rng.choice(CALL_NOTES)})
        last = first
        if rng.random() < rates.second_touch:
            last = working_time(first + rng.randrange(DAY, 5 * DAY), rep["timezone"], rng)
            kind = "email" if rng.random() < rates.email_share else "call"
            self.schedule(last, lead["Id"], at, "touch", {**plan, "kind": kind, "note": rng.choice(CALL_NOTES)})
        roll = rng.random()
        outcomes = (("convert", rates.convert), ("nurture", rates.nurture), ("close", rates.close_unconverted))
        for outcome, share in outcomes:
            if roll < share:
                due = working_time(last + rng.randrange(DAY, 10 * DAY), rep["timezone"], rng)
                self.schedule(due, lead["Id"], at, outcome, {**plan, "reason": rng.choice(RECYCLE_REASONS)})
                return
            roll -= share

    def _plan_opportunity(self, opportunity: dict, at: int) -> None:
        rep = self._rep(opportunity.get("OwnerId"))
        if rep is None or opportunity.get("IsClosed"):
            return
        rng = self._rng("opportunity", opportunity["Id"], rep["id"], at)
        open_stages = list(OPPORTUNITY_STAGES[1:5])
        path = open_stages + ["Closed Won"] if rng.random() < self.rates.win else \
            open_stages[:rng.randrange(0, 4)] + ["Closed Lost"]
        due = at
        for stage in path:
            due = working_time(due + rng.randrange(2 * DAY, 12 * DAY), rep["timezone"], rng)
            self.schedule(due, opportunity["Id"], at, "stage", {"owner": rep["id"], "stage": stage})

    # ------------------------------------------------------------ playing the steps

    def catch_up(self, until: int) -> None:
        while self.queue and self.queue[0][0] <= until:
            due, record_id, plan_at, _, action, payload = heapq.heappop(self.queue)
            getattr(self, f"_{action}")(due, record_id, plan_at, payload)

    def _current(self, kind: str, record_id: str, plan_at: int, owner: str) -> dict | None:
        """The record if the plan still holds: live, same owner, owner not set again since."""
        record = self.org.records[kind.lower()].get(record_id)
        if record is None or record["IsDeleted"] or record.get("OwnerId") != owner:
            return None
        return record if self.org.owner_set_at(record_id) == plan_at else None

    def _claim(self, due: int, lead_id: str, plan_at: int, p: dict) -> None:
        lead = self._current("Lead", lead_id, plan_at, p["owner"])
        if lead is not None and lead.get("Status") in (OPEN, WORKING) and not lead["IsConverted"]:
            self.org.put("Lead", lead_id, {"OwnerId": p["rep"]}, p["rep"], due)

    def _touch(self, due: int, lead_id: str, plan_at: int, p: dict) -> None:
        lead = self._current("Lead", lead_id, plan_at, p["owner"])
        if lead is None or lead["IsConverted"] or lead.get("Status") not in (OPEN, WORKING):
            return
        rep, org = p["owner"], self.org
        if p["kind"] == "meeting":
            start = due + 2 * DAY - due % HOUR
            org.insert("Event", {"WhoId": lead_id, "OwnerId": rep, "Subject": "Discovery call",
                                 "StartDateTime": start, "EndDateTime": start + 30 * 60}, rep, due, people=True)
        else:
            email = p["kind"] == "email"
            org.insert("Task", {"WhoId": lead_id, "OwnerId": rep, "Status": "Completed", "Priority": "Normal",
                                "Subject": "Email: Following up on your interest" if email else "Call",
                                "Type": "Email" if email else "Call", "TaskSubtype": "Email" if email else "Call",
                                "ActivityDate": day_of(due), "Description": None if email else p["note"]},
                       rep, due, people=True)
        if lead.get("Status") == OPEN:
            org.put("Lead", lead_id, {"Status": WORKING}, rep, due)

    def _worked(self, lead_id: str, plan_at: int, p: dict) -> dict | None:
        lead = self._current("Lead", lead_id, plan_at, p["owner"])
        return lead if lead is not None and lead.get("Status") == WORKING and not lead["IsConverted"] else None

    def _nurture(self, due: int, lead_id: str, plan_at: int, p: dict) -> None:
        if self._worked(lead_id, plan_at, p):
            self.org.put("Lead", lead_id, {"Status": NURTURING, "Recycle_Reason__c": p["reason"]}, p["owner"], due)

    def _close(self, due: int, lead_id: str, plan_at: int, p: dict) -> None:
        if self._worked(lead_id, plan_at, p):
            self.org.put("Lead", lead_id, {"Status": NOT_CONVERTED}, p["owner"], due)

    def _convert(self, due: int, lead_id: str, plan_at: int, p: dict) -> None:
        lead = self._worked(lead_id, plan_at, p)
        if lead is None:
            return
        org, rep = self.org, p["owner"]
        company = lead.get("Company") or lead.get("LastName")
        account_id = org.accounts_by_name.get(company.lower())
        if account_id is None:
            domain = (lead.get("Email") or "@").split("@")[1].lower()
            website = None if not domain or domain in catalog.FREE_MAIL else f"www.{domain}"
            account_id = org.insert("Account", {"Name": company, "OwnerId": rep, "Website": website,
                                                "Industry": lead.get("Industry")}, rep, due, people=True)["Id"]
        carried = {k: v for k, v in lead.items() if k.endswith("__c")}
        contact = org.insert("Contact", {**carried, "AccountId": account_id, "FirstName": lead.get("FirstName"),
                                         "LastName": lead["LastName"], "Email": lead.get("Email"),
                                         "Title": lead.get("Title"), "OwnerId": rep}, rep, due, people=True)
        employees = lead.get("NumberOfEmployees") or 10
        line = lead.get("Product_Line__c") or "New Business"
        amount = float(max(6000, min(250000, employees * 60)) // 100 * 100)  # a seat price by company size
        deal = {"AccountId": account_id, "Name": f"{company} - {line}", "StageName": OPPORTUNITY_STAGES[0],
                "CloseDate": day_of(due + 30 * DAY), "Amount": amount, "OwnerId": rep}
        opportunity = org.insert("Opportunity", deal, rep, due, people=True)
        org.put("Lead", lead_id, {"Status": CONVERTED, "IsConverted": True, "ConvertedAccountId": account_id,
                                  "ConvertedContactId": contact["Id"], "ConvertedOpportunityId": opportunity["Id"],
                                  "ConvertedDate": day_of(due)}, rep, due)
        self.move_activities(lead_id, contact["Id"], rep, due)

    def move_activities(self, from_id: str, to_id: str, user: str, at: int) -> None:
        for activity_id in sorted(self.org.activities_by_who.get(from_id, ())):
            kind = "Task" if activity_id.startswith("00T") else "Event"
            self.org.put(kind, activity_id, {"WhoId": to_id}, user, at)

    def _stage(self, due: int, opportunity_id: str, plan_at: int, p: dict) -> None:
        opportunity = self._current("Opportunity", opportunity_id, plan_at, p["owner"])
        if opportunity is None or opportunity.get("IsClosed"):
            return
        changes = {"StageName": p["stage"]}
        if p["stage"].startswith("Closed"):
            changes["CloseDate"] = day_of(due)
        self.org.put("Opportunity", opportunity_id, changes, p["owner"], due)

    def _merge(self, due: int, loser_id: str, plan_at: int, p: dict) -> None:
        """The admin merges an accidental duplicate into the older lead (the loser is deleted, pointing at it)."""
        org, admin = self.org, p["admin"]
        winner, loser = (org.records["lead"].get(i) for i in (p["winner"], loser_id))
        if not winner or not loser or winner["IsDeleted"] or loser["IsDeleted"] or loser["IsConverted"]:
            return
        org.put("Lead", loser_id, {"IsDeleted": True, "MasterRecordId": winner["Id"]}, admin, due)
        self.move_activities(loser_id, winner["Id"], admin, due)
        org.put("Lead", winner["Id"], {}, admin, due)

    def _delete(self, due: int, record_id: str, plan_at: int, p: dict) -> None:
        record = self.org.records["lead"].get(record_id)
        if record is not None and not record["IsDeleted"]:
            self.org.put("Lead", record_id, {"IsDeleted": True}, p["admin"], due)

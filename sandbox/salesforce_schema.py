"""The Salesforce stand-in's schema: objects, fields, 18-character ids, and values as the REST API writes them."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
CHECKSUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
POD = "5e"  # the instance part of every id this org hands out
ID_RE = re.compile(r"^[a-zA-Z0-9]{15}(?:[A-Z0-5]{3})?$")
TEXT = ("string", "email", "url", "phone", "textarea", "picklist", "combobox")
NUMBER = ("int", "double", "currency", "percent")
SOAP_TYPE = {"id": "tns:ID", "reference": "tns:ID", "boolean": "xsd:boolean", "datetime": "xsd:dateTime",
             "date": "xsd:date", "int": "xsd:int", "double": "xsd:double", "currency": "xsd:double"}
LEAD_STATUSES = ("Open - Not Contacted", "Working - Contacted", "Nurturing", "Closed - Converted",
                 "Closed - Not Converted")
OPPORTUNITY_STAGES = ("Prospecting", "Qualification", "Needs Analysis", "Proposal/Price Quote", "Negotiation/Review",
                      "Closed Won", "Closed Lost")
TIMEZONES = ("GMT", "Europe/London", "Europe/Berlin", "Europe/Paris", "Europe/Amsterdam", "America/New_York",
             "America/Chicago", "America/Los_Angeles")
TASK_STATUSES = ("Not Started", "In Progress", "Completed", "Waiting on someone else", "Deferred")


# ---------------------------------------------------------------- ids

def base62(number: int, width: int) -> str:
    digits = []
    while number:
        number, rest = divmod(number, 62)
        digits.append(BASE62[rest])
    return "".join(reversed(digits)).rjust(width, "0")


def checksum(id15: str) -> str:
    """The case-safe suffix: one character per five, a bit set for each upper-case letter."""
    suffix = ""
    for start in (0, 5, 10):
        bits = sum(1 << i for i, c in enumerate(id15[start:start + 5]) if "A" <= c <= "Z")
        suffix += CHECKSUM[bits]
    return suffix


def make_id(prefix: str, number: int) -> str:
    body = f"{prefix}{POD}0{base62(number, 9)}"
    return body + checksum(body)


def full_id(value: str) -> str | None:
    """The 18-character form of a 15- or 18-character id, or None when it is not an id (case-safe check included)."""
    if not isinstance(value, str) or not ID_RE.match(value):
        return None
    if len(value) == 15:
        return value + checksum(value)
    return value if checksum(value[:15]) == value[15:] else None


# ---------------------------------------------------------------- time

def parse_datetime(text: str) -> float | None:
    """Epoch seconds of an ISO 8601 date-time (Z, +hh:mm or +hhmm; none is UTC), to the millisecond as Salesforce
    keeps them, else None."""
    match = re.fullmatch(r"(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2}:\d{2})(\.\d{1,9})?(Z|[+-]\d{2}:?\d{2})?", text.strip())
    if not match:
        return None
    day, clock, fraction, zone = match.groups()
    zone = zone or "Z"
    if zone != "Z" and ":" not in zone:
        zone = zone[:3] + ":" + zone[3:]
    try:
        seconds = int(datetime.fromisoformat(f"{day}T{clock}{'+00:00' if zone == 'Z' else zone}").timestamp())
    except ValueError:
        return None
    milliseconds = int(fraction[1:4].ljust(3, "0")) if fraction else 0
    return seconds + milliseconds / 1000 if milliseconds else seconds


def parse_date(text: str) -> str | None:
    text = text.strip()
    try:
        return datetime.strptime(text, "%Y-%m-%d").strftime("%Y-%m-%d") if len(text) == 10 else None
    except ValueError:
        return None


def render_datetime(epoch: float) -> str:
    milliseconds = round((epoch - int(epoch)) * 1000) % 1000
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(int(epoch))) + f".{milliseconds:03d}+0000"


def day_of(epoch: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(epoch))


# ---------------------------------------------------------------- schema

@dataclass(frozen=True)
class Field:
    name: str
    type: str
    label: str
    length: int = 0
    precision: int = 0
    scale: int = 0
    required: bool = False
    createable: bool = True
    updateable: bool = True
    default: Any = None
    external_id: bool = False
    unique: bool = False
    reference_to: tuple[str, ...] = ()
    relationship: str | None = None
    picklist: tuple[str, ...] = ()
    restricted: bool = False
    custom: bool = False

    def describe(self) -> dict:
        return {
            "name": self.name, "label": self.label, "type": self.type,
            "soapType": SOAP_TYPE.get(self.type, "xsd:string"),
            "length": self.length, "byteLength": self.length * 3, "precision": self.precision, "scale": self.scale,
            "digits": 9 if self.type == "int" else 0, "custom": self.custom, "externalId": self.external_id,
            "unique": self.unique, "idLookup": self.name == "Id" or self.external_id or self.name == "Email",
            "createable": self.createable, "updateable": self.updateable,
            "nillable": not self.required and self.type not in ("boolean", "id"),
            "defaultedOnCreate": self.default is not None or self.type == "boolean" or not self.createable,
            "filterable": True, "sortable": self.type != "textarea", "calculated": False,
            "referenceTo": list(self.reference_to), "relationshipName": self.relationship,
            "picklistValues": [{"active": True, "defaultValue": v == self.default, "label": v, "validFor": None,
                                "value": v} for v in self.picklist],
            "restrictedPicklist": self.restricted, "nameField": self.name == "Name",
        }


@dataclass
class SObject:
    name: str
    label: str
    plural: str
    prefix: str
    fields: dict[str, Field] = field(default_factory=dict)  # lower-case name -> field
    relationships: dict[str, Field] = field(default_factory=dict)  # lower-case relationship name -> its id field
    createable: bool = True

    def add(self, *fields: Field) -> "SObject":
        for f in fields:
            self.fields[f.name.lower()] = f
            if f.relationship:
                self.relationships[f.relationship.lower()] = f
        return self

    def field(self, name: str) -> Field | None:
        return self.fields.get(name.lower())

    def relationship(self, name: str) -> Field | None:
        return self.relationships.get(name.lower())

    def urls(self, version: str) -> dict:
        base = f"/services/data/v{version}/sobjects/{self.name}"
        return {"sobject": base, "describe": f"{base}/describe", "rowTemplate": f"{base}/{{ID}}"}

    def summary(self, version: str) -> dict:
        return {"name": self.name, "label": self.label, "labelPlural": self.plural, "keyPrefix": self.prefix,
                "custom": False, "createable": self.createable, "updateable": self.createable,
                "deletable": self.createable, "queryable": True, "retrieveable": True, "searchable": True,
                "layoutable": True, "urls": self.urls(version)}

    def describe(self, version: str) -> dict:
        body = self.summary(version)
        body.update({"fields": [f.describe() for f in self.fields.values()], "childRelationships": [],
                     "recordTypeInfos": [], "supportedScopes": [{"label": "All", "name": "everything"}]})
        return body


def _label(name: str) -> str:
    if name.endswith("__c"):
        return name[:-3].replace("_", " ")
    label = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", name)
    return label[:-3] + " ID" if label.endswith(" Id") else label


def text(name, length, **kw) -> Field:
    return Field(name, "string", kw.pop("label", None) or _label(name), length=length, **kw)


def ref(name, *targets, relationship=None, **kw) -> Field:
    relationship = relationship or (name[:-2] if name.endswith("Id") else None)
    return Field(name, "reference", kw.pop("label", None) or _label(name), length=18, reference_to=targets,
                 relationship=relationship, **kw)


def of(name, type_, **kw) -> Field:
    return Field(name, type_, kw.pop("label", None) or _label(name), **kw)


def readonly(f: Field) -> Field:
    return Field(**{**f.__dict__, "createable": False, "updateable": False})


def _system(name: str, owner_to: tuple[str, ...] | None = None, merged: bool = False) -> list[Field]:
    fields = [
        readonly(of("Id", "id", label="Record ID", length=18)),
        readonly(of("IsDeleted", "boolean", label="Deleted")),
        readonly(of("CreatedDate", "datetime", label="Created Date")),
        readonly(ref("CreatedById", "User", label="Created By ID")),
        readonly(of("LastModifiedDate", "datetime", label="Last Modified Date")),
        readonly(ref("LastModifiedById", "User", label="Last Modified By ID")),
        readonly(of("SystemModstamp", "datetime", label="System Modstamp")),
    ]
    if owner_to:
        fields.append(ref("OwnerId", *owner_to, label="Owner ID"))
    if merged:
        fields.append(readonly(ref("MasterRecordId", name, label="Master Record ID")))
    return fields


def _handoff_fields() -> list[Field]:
    custom = dict(custom=True)
    return [
        text("Handoff_Id__c", 40, external_id=True, unique=True, label="Handoff Id", **custom),
        of("Handoff_Score__c", "double", precision=6, scale=0, label="Handoff Score", **custom),
        text("Handoff_Fit_Grade__c", 1, label="Handoff Fit Grade", **custom),
        text("Handoff_Stage__c", 20, label="Handoff Stage", **custom),
        of("Handoff_MQL_Date__c", "datetime", label="Handoff MQL Date", **custom),
        text("Handoff_Last_Interesting_Moment__c", 255, label="Handoff Last Interesting Moment", **custom),
        of("Handoff_Last_Interesting_Moment_At__c", "datetime", label="Handoff Last Interesting Moment At", **custom),
        text("Product_Line__c", 80, label="Product Line", **custom),
        text("Recycle_Reason__c", 255, label="Recycle Reason", **custom),
    ]


def _names(first_length: int = 40) -> list[Field]:
    return [text("FirstName", first_length), text("LastName", 80, required=True),
            readonly(text("Name", 121, label="Full Name"))]


def build_schema() -> dict[str, SObject]:
    """Every object the stand-in serves, by lower-case name (SOQL and URLs match names without regard to case)."""
    lead = SObject("Lead", "Lead", "Leads", "00Q").add(
        *_system("Lead", ("Group", "User"), merged=True), *_names(),
        text("Company", 255, required=True), text("Title", 128), of("Email", "email", length=80),
        of("Status", "picklist", label="Lead Status", length=255, picklist=LEAD_STATUSES, restricted=True,
           required=True, default=LEAD_STATUSES[0]),
        of("LeadSource", "picklist", label="Lead Source", length=255,
           picklist=("Web", "Phone Inquiry", "Partner Referral", "Purchased List", "Other")),
        of("Industry", "picklist", length=255, picklist=("Software", "Financial Services", "Retail", "Education")),
        of("NumberOfEmployees", "int", label="Employees", precision=8), text("Country", 80),
        readonly(of("IsConverted", "boolean", label="Converted")),
        readonly(ref("ConvertedAccountId", "Account", label="Converted Account ID")),
        readonly(ref("ConvertedContactId", "Contact", label="Converted Contact ID")),
        readonly(ref("ConvertedOpportunityId", "Opportunity", label="Converted Opportunity ID")),
        readonly(of("ConvertedDate", "date", label="Converted Date")),
        *_handoff_fields(),
    )
    contact = SObject("Contact", "Contact", "Contacts", "003").add(
        *_system("Contact", ("User",), merged=True), ref("AccountId", "Account", label="Account ID"), *_names(),
        of("Email", "email", length=80), text("Title", 128), *_handoff_fields(),
    )
    account = SObject("Account", "Account", "Accounts", "001").add(
        *_system("Account", ("User",), merged=True), text("Name", 255, label="Account Name", required=True),
        of("Website", "url", length=255),
        of("Industry", "picklist", length=255, picklist=("Software", "Financial Services", "Retail", "Education")),
    )
    user = SObject("User", "User", "Users", "005", createable=False).add(
        *(readonly(f) for f in _system("User")), readonly(text("Username", 80)),
        readonly(of("Email", "email", length=128)), *(readonly(f) for f in _names()), readonly(text("Title", 80)),
        readonly(of("IsActive", "boolean", label="Active")), readonly(ref("ManagerId", "User", label="Manager ID")),
        readonly(of("TimeZoneSidKey", "picklist", label="Time Zone", length=40, picklist=TIMEZONES)),
        readonly(text("Department", 80)),
    )
    group = SObject("Group", "Group", "Groups", "00G", createable=False).add(
        *(readonly(f) for f in _system("Group")), readonly(text("Name", 40)),
        readonly(text("DeveloperName", 80)), readonly(of("Type", "picklist", length=40, picklist=("Queue", "Regular"))),
        readonly(of("Email", "email", length=255)),
    )
    task = SObject("Task", "Task", "Tasks", "00T").add(
        *_system("Task", ("User",)), ref("WhoId", "Contact", "Lead", label="Name ID"),
        ref("WhatId", "Account", "Opportunity", label="Related To ID"),
        of("Subject", "combobox", length=255),
        of("Type", "picklist", length=40, picklist=("Call", "Email", "Meeting", "Other")),
        Field("TaskSubtype", "picklist", "Task Subtype", length=40, picklist=("Task", "Email", "Call"),
              updateable=False),
        of("Status", "picklist", length=40, picklist=TASK_STATUSES, restricted=True, required=True,
           default="Not Started"),
        of("Priority", "picklist", length=40, picklist=("High", "Normal", "Low"), required=True, default="Normal"),
        of("ActivityDate", "date", label="Due Date Only"), readonly(of("CompletedDateTime", "datetime")),
        readonly(of("IsClosed", "boolean", label="Closed")), of("Description", "textarea", length=32000),
    )
    event = SObject("Event", "Event", "Events", "00U").add(
        *_system("Event", ("User",)), ref("WhoId", "Contact", "Lead", label="Name ID"),
        ref("WhatId", "Account", "Opportunity", label="Related To ID"), of("Subject", "combobox", length=255),
        of("StartDateTime", "datetime", required=True), of("EndDateTime", "datetime", required=True),
        of("Description", "textarea", length=32000),
    )
    opportunity = SObject("Opportunity", "Opportunity", "Opportunities", "006").add(
        *_system("Opportunity", ("User",)), ref("AccountId", "Account", label="Account ID"),
        text("Name", 120, required=True),
        of("StageName", "picklist", label="Stage", length=255, picklist=OPPORTUNITY_STAGES, restricted=True,
           required=True),
        readonly(of("IsClosed", "boolean", label="Closed")), readonly(of("IsWon", "boolean", label="Won")),
        of("CloseDate", "date", required=True), of("Amount", "currency", precision=18, scale=2),
    )
    rule = SObject("AssignmentRule", "Assignment Rule", "Assignment Rules", "01Q", createable=False).add(
        *(readonly(f) for f in _system("AssignmentRule")), readonly(text("Name", 120)),
        readonly(of("SobjectType", "picklist", length=40, picklist=("Lead", "Case"))),
        readonly(of("Active", "boolean")),
    )
    objects = (lead, contact, account, user, group, task, event, opportunity, rule)
    return {o.name.lower(): o for o in objects}


# ---------------------------------------------------------------- values

class RecordError(Exception):
    """One record refused, as Salesforce words it: statusCode, message and the fields at fault."""

    def __init__(self, code: str, message: str, fields: list[str] | None = None, extra: dict | None = None):
        super().__init__(f"{code}: {message}")
        self.code, self.message, self.fields, self.extra = code, message, fields or [], extra or {}

    def as_error(self) -> dict:
        return {"statusCode": self.code, "message": self.message, "fields": self.fields, **self.extra}

    def as_rest(self) -> dict:
        return {"message": self.message, "errorCode": self.code, "fields": self.fields, **self.extra}


def _not_type(f: Field, value: Any) -> RecordError:
    return RecordError("INVALID_TYPE_ON_FIELD_IN_RECORD", f"{f.label}: value not of required type: {value}", [f.name])


def coerce(f: Field, value: Any, from_text: bool = False) -> Any:
    """A written value as the org stores it (datetimes as epoch seconds), or a RecordError as the org words it."""
    if value is None:
        return None
    kind = f.type
    if kind in TEXT:
        value = value if isinstance(value, str) else str(value).lower() if isinstance(value, bool) else str(value)
        if f.length and len(value) > f.length:
            raise RecordError("STRING_TOO_LONG", f"{f.label}: data value too large: {value} (max length={f.length})",
                              [f.name])
        if kind == "email" and value and not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", value):
            raise RecordError("INVALID_EMAIL_ADDRESS", f"{f.label}: invalid email address: {value}", [f.name])
        if f.restricted and value not in f.picklist:
            raise RecordError("INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                              f"{f.label}: bad value for restricted picklist field: {value}", [f.name])
        return value
    if kind in ("id", "reference"):
        normal = full_id(str(value))
        if normal is None:
            raise RecordError("MALFORMED_ID", f"{f.label}: id value of incorrect type: {value}", [f.name])
        return normal
    if kind == "boolean":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0"):
            return value.strip().lower() in ("true", "1")
        raise _not_type(f, value)
    if kind in NUMBER:
        return _number(f, value)
    if kind == "datetime":
        epoch = parse_datetime(value) if isinstance(value, str) else None
        if epoch is None:
            raise _not_type(f, value)
        return epoch
    if kind == "date":
        day = parse_date(value) if isinstance(value, str) else None
        if day is None:
            raise _not_type(f, value)
        return day
    return value


def _number(f: Field, value: Any) -> int | float:
    if isinstance(value, bool):
        raise _not_type(f, value)
    try:
        number = float(value.strip()) if isinstance(value, str) else float(value)
    except (TypeError, ValueError):
        raise _not_type(f, value) from None
    if number != number or number in (float("inf"), float("-inf")):
        raise _not_type(f, value)
    if f.type == "int":
        if number != int(number):
            raise _not_type(f, value)
        number = int(number)
    else:
        number = round(number, f.scale)
    whole = f.precision - f.scale if f.precision else 18
    if abs(number) >= 10 ** whole:
        raise RecordError("NUMBER_OUTSIDE_VALID_RANGE",
                          f"{f.label}: value outside of valid range on numeric field: {value}", [f.name])
    return number


def render(f: Field, value: Any) -> Any:
    """A stored value as JSON shows it."""
    if value is None:
        return None
    if f.type == "datetime":
        return render_datetime(value)
    if f.type in ("double", "currency", "percent"):
        return float(value)
    return value

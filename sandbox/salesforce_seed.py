"""The Salesforce stand-in's starting data, drawn from the synthetic world and its seed.

Users (an admin, the integration user API writes run as, two sales managers, seven reps each selling one product
line and an inactive rep), the inbound lead queue, the lead assignment rule, accounts for a share of the world's
companies, leads for about a tenth of its people (owned by reps: the relationship owner; some duplicated per
product line), a few contacts, and two pieces of housekeeping for the admin: an accidental duplicate to merge and a
test lead to delete, the day after the world's end.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from sandbox import catalog
from sandbox.salesforce_people import DAY, HOUR, working_time
from sandbox.salesforce_schema import make_id

if TYPE_CHECKING:
    from sandbox.salesforce_org import Org

DOMAIN = "handoff-demo.example"
# key, first name, last name, time zone, role, manager, product line, active
STAFF = (
    ("admin", "Dana", "Whitfield", "America/New_York", "admin", None, None, True),
    ("integration", "Handoff", "Integration", "GMT", "integration", None, None, True),
    ("morgan", "Morgan", "Reyes", "America/New_York", "manager", None, None, True),
    ("lena", "Lena", "Vogel", "Europe/Berlin", "manager", None, None, True),
    ("jordan", "Jordan", "Blake", "America/New_York", "rep", "morgan", "Scoring", True),
    ("priya", "Priya", "Nair", "America/Chicago", "rep", "morgan", "Routing", True),
    ("sam", "Sam", "Carter", "America/Los_Angeles", "rep", "morgan", "SLA", True),
    ("oliver", "Oliver", "Hughes", "Europe/London", "rep", "lena", "Scoring", True),
    ("jonas", "Jonas", "Weber", "Europe/Berlin", "rep", "lena", "Routing", True),
    ("emma", "Emma", "de Vries", "Europe/Amsterdam", "rep", "lena", "SLA", True),
    ("sophie", "Sophie", "Martin", "Europe/Paris", "rep", "lena", "Routing", True),
    ("chris", "Chris", "Dalton", "Europe/London", "rep", "lena", "Scoring", False),
)
TITLES = {"admin": "Salesforce Administrator", "integration": "Integration User", "morgan": "Sales Director, Americas",
          "lena": "Sales Director, EMEA"}
DEPARTMENTS = {"morgan": "Sales Americas", "lena": "Sales EMEA"}  # a rep's department is their manager's
LEAD_SHARE, SECOND_LINE_SHARE, CONTACT_SHARE, ACCOUNT_SHARE, NEGLECTED_SHARE = 0.10, 0.3, 0.03, 0.3, 0.08
LEAD_SOURCES = {"Paid Search": "Web", "Organic Search": "Web", "Social": "Web", "Referral": "Partner Referral",
                "Webinar": "Other", "Event": "Other", "Content Syndication": "Purchased List"}


def seed(org: "Org") -> None:
    world = org.world
    end = int(world.spec.end.timestamp())
    start = end - world.spec.weeks * 7 * DAY
    org.org_id = make_id("00D", 1)
    _users(org, start - 400 * DAY)
    admin = org.user("admin")
    org.queue_id = org.insert("Group", {"Name": "Inbound Leads", "DeveloperName": "Inbound_Leads", "Type": "Queue",
                                        "Email": f"inbound-leads@{DOMAIN}"}, admin, start - 300 * DAY)["Id"]
    org.rule_id = org.insert("AssignmentRule", {"Name": "Lead Routing by Country", "SobjectType": "Lead",
                                                "Active": True}, admin, start - 300 * DAY)["Id"]
    accounts = _accounts(org, start)
    _leads(org, accounts, start, end)
    _housekeeping(org, start, end)


def _users(org: "Org", at: int) -> None:
    for key, first, last, tz, role, manager, line, active in STAFF:
        title = TITLES.get(key) or f"Account Executive, {line}"
        department = DEPARTMENTS.get(key) or DEPARTMENTS.get(manager) or "Revenue Operations"
        username = f"{first}.{last}".lower().replace(" ", "") + f"@{DOMAIN}"
        values = {"FirstName": first, "LastName": last, "Username": username, "Email": username, "Title": title,
                  "Department": department, "TimeZoneSidKey": tz, "IsActive": active,
                  "ManagerId": org.user(manager) if manager else None}
        record = org.insert("User", values, org.staff["admin"]["id"] if org.staff else "", at)
        if not org.staff:  # the admin created everyone, herself included
            record["CreatedById"] = record["LastModifiedById"] = record["Id"]
        org.staff[key] = {"id": record["Id"], "role": role, "product_line": line, "timezone": tz, "active": active,
                          "username": username}


def _reps(org: "Org", line: str | None = None) -> list[dict]:
    reps = [p for p in org.staff.values() if p["role"] == "rep" and p["active"]]
    return [p for p in reps if p["product_line"] == line] or reps


def _domain(email: str) -> str | None:
    domain = email.split("@")[1].lower()
    return None if domain in catalog.FREE_MAIL or domain in catalog.COMPETITOR_DOMAINS else domain


def _accounts(org: "Org", start: int) -> dict[str, str]:
    """Accounts for a share of the companies whose people write from a company domain: company -> account id."""
    seed, accounts = org.world.spec.seed, {}
    for person in org.world.people:
        domain = _domain(person.email)
        if domain is None or person.company in accounts:
            continue
        rng = random.Random(f"{seed}:sf:account:{person.company}")
        if rng.random() >= ACCOUNT_SHARE:
            accounts[person.company] = ""
            continue
        owner = rng.choice(_reps(org))
        created = start - rng.randrange(30, 700) * DAY
        accounts[person.company] = org.insert("Account", {"Name": person.company, "Website": f"www.{domain}",
                                                          "Industry": person.industry, "OwnerId": owner["id"]},
                                              owner["id"], created)["Id"]
    return {company: account for company, account in accounts.items() if account}


def _lead_values(person, line: str, owner: str) -> dict:
    return {"FirstName": person.first_name, "LastName": person.last_name, "Company": person.company,
            "Title": person.title, "Email": person.email, "Country": person.country, "Industry": person.industry,
            "NumberOfEmployees": person.company_size, "LeadSource": LEAD_SOURCES.get(person.channel, "Other"),
            "Product_Line__c": line, "OwnerId": owner}


def _leads(org: "Org", accounts: dict[str, str], start: int, end: int) -> None:
    seed = org.world.spec.seed
    inactive = org.user("chris")
    for person in org.world.people:
        rng = random.Random(f"{seed}:sf:person:{person.index}")
        roll = rng.random()
        account = accounts.get(person.company)
        if roll < CONTACT_SHARE:  # an existing customer's contact, with an account for the company if it had none
            if account is None:
                rep, domain = rng.choice(_reps(org))["id"], _domain(person.email)
                account = accounts[person.company] = org.insert(
                    "Account", {"Name": person.company, "Website": f"www.{domain}" if domain else None,
                                "Industry": person.industry, "OwnerId": rep}, rep, start - 400 * DAY)["Id"]
            owner = org.records["account"][account]["OwnerId"]
            org.insert("Contact", {"FirstName": person.first_name, "LastName": person.last_name, "Email": person.email,
                                   "Title": person.title, "AccountId": account, "OwnerId": owner},
                       owner, start - rng.randrange(10, 300) * DAY)
            continue
        if roll >= CONTACT_SHARE + LEAD_SHARE:
            continue
        # the relationship owner: the account's owner, else a rep of the product line (a few left with a leaver)
        if account:
            owner = org.records["account"][account]["OwnerId"]
        else:
            owner = rng.choice(_reps(org, person.product_interest))["id"]
        if rng.random() < NEGLECTED_SHARE:
            owner = inactive
        created = working_time(end - rng.randrange(2 * DAY, 120 * DAY), "Europe/London", rng)
        org.insert("Lead", _lead_values(person, person.product_interest, owner), owner, created)
        if rng.random() < SECOND_LINE_SHARE:
            line = rng.choice([p for p in catalog.PRODUCTS if p != person.product_interest])
            rep = rng.choice(_reps(org, line))["id"]
            later = min(end - HOUR, created + rng.randrange(DAY, 30 * DAY))
            org.insert("Lead", _lead_values(person, line, rep), rep, later)


def _housekeeping(org: "Org", start: int, end: int) -> None:
    """An accidental duplicate (same person, same product line, left with the leaver) and a test lead for the admin."""
    admin, inactive = org.user("admin"), org.user("chris")
    known = {r["Email"].lower() for r in org.records["lead"].values() if r.get("Email")}
    known |= {r["Email"].lower() for r in org.records["contact"].values() if r.get("Email")}
    person = next(p for p in org.world.people if p.email.lower() not in known)
    first = org.insert("Lead", _lead_values(person, person.product_interest, inactive), admin, end - 9 * DAY)
    second = org.insert("Lead", _lead_values(person, person.product_interest, inactive), admin, end - 2 * DAY)
    test = org.insert("Lead", {"FirstName": "Test", "LastName": "Test", "Company": "Test", "Email": f"test@{DOMAIN}",
                               "Country": "US", "OwnerId": admin}, admin, end - 5 * DAY)
    rng = random.Random(f"{org.world.spec.seed}:sf:housekeeping")
    org.workforce.schedule(working_time(end + 20 * HOUR, "America/New_York", rng), second["Id"], end, "merge",
                           {"admin": admin, "winner": first["Id"]})
    org.workforce.schedule(working_time(end + 28 * HOUR, "America/New_York", rng), test["Id"], end, "delete",
                           {"admin": admin})

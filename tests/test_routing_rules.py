"""Routing a sales-ready lead: each rule of routing.yaml (keep the owner, account owner, product line, territory,
weighted round robin, fallback) with frozen time, the reasons a rep is skipped, the routing path a decision keeps,
the round robin's fairness (Hypothesis, derandomized), and the routing file's validation with file and line."""

from __future__ import annotations

import json
import os
import random
import shutil
from datetime import date, datetime, timedelta
from fractions import Fraction
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from config.routing import ROUTING_FILE, RoutingConfigError, describe_routing, load_routing
from config.teams import load_teams
from domain.business_hours import UTC
from domain.crm_directory import CrmDirectory, DirectoryAccount, DirectoryUser, company_key, website_domain
from domain.round_robin import RoundRobinState, next_rep
from domain.routing import RoutingState, route
from domain.routing_rules import (
    AccountOwner, Assign, ByProductLine, ByTerritory, FallbackTo, KeepOwner, LeadRecords, LeadToRoute, Owners,
    ProductLine, RecentActivity, RoundRobinIn, RoutingRules, product_line_of,
)
from domain.teams import Fallback

DATA = Path(__file__).parent / "data" / "routing"
TEAMS = load_teams(DATA / "teams.yaml")
BERLIN, NEW_YORK = ZoneInfo("Europe/Berlin"), ZoneInfo("America/New_York")
# Tuesday 9 June 2026, 10:00 in Berlin: DACH and the SLA desk at work, New York asleep, Ben on holiday.
TUESDAY_MORNING = datetime(2026, 6, 9, 10, tzinfo=BERLIN)
THURSDAY_MORNING = datetime(2026, 6, 11, 10, tzinfo=BERLIN)  # Carla works Monday to Wednesday only
LINES = (ProductLine("scoring", ("lead scoring",)), ProductLine("routing", ("lead routing",)),
         ProductLine("sla", ("service level", "response time")))
USER_IDS = {rep.email: f"005{n:03d}" for n, rep in enumerate(TEAMS.reps)}
MARA_ID, INTEGRATION_ID, LEAVER_ID = "005900", "005901", "005902"


def directory(*, inactive: tuple[str, ...] = (), missing: tuple[str, ...] = (),
              accounts: tuple[DirectoryAccount, ...] = ()) -> CrmDirectory:
    users = [DirectoryUser(USER_IDS[rep.email], rep.email.upper(), rep.name, active=rep.email not in inactive)
             for rep in TEAMS.reps if rep.email not in missing]
    users += [DirectoryUser(MARA_ID, "mara@example.com", "Mara"),
              DirectoryUser(INTEGRATION_ID, "integration@example.com", "Integration"),
              DirectoryUser(LEAVER_ID, "leaver@example.com", "Leaver", active=False)]
    return CrmDirectory(tuple(users), accounts)


def rules(*rules, lead_records: LeadRecords = LeadRecords.PER_PERSON) -> RoutingRules:
    return RoutingRules(tuple(rules), LINES, lead_records)


def lead(**fields) -> LeadToRoute:
    return LeadToRoute(**{"lead_id": 1, "email": "kim@northwind.example", "company": "Northwind", **fields})


def decide(lead_: LeadToRoute, routing: RoutingRules, *, now: datetime = TUESDAY_MORNING,
           crm: CrmDirectory | None = None, state: RoutingState | None = None, excluded=()):
    return route(lead_, rules=routing, teams=TEAMS, directory=crm or directory(), state=state or RoutingState(),
                 now=now, excluded_reps=excluded)


def step(decision, rule: str):
    [found] = [s for s in decision.path if s.rule == rule]
    return found


def skipped(decision) -> dict[str, str]:
    return {c.rep: c.skipped for s in decision.path for c in s.candidates if c.skipped}


TRIAGE = FallbackTo("triage")
DACH_ROUND_ROBIN = RoundRobinIn("dach round robin", "dach")


# ------------------------------------------------------------------------------------------ keep the owner

def test_a_lead_owned_by_an_active_rep_stays_with_them_and_they_are_only_notified():
    decision, state = decide(lead(crm_owner_id=USER_IDS["eve@example.com"]), rules(KeepOwner("owner"), TRIAGE))
    assert (decision.rule, decision.owner.rep, decision.owner.crm_user_id) == ("owner", "eve@example.com", "005004")
    assert decision.notify_only and decision.team == "north-america"
    assert state.given == {}  # keeping a lead is no new lead against Eve's capacity


def test_a_lead_owned_by_a_user_who_is_not_a_rep_is_kept_only_when_the_rule_says_any_active_user():
    owned_by_mara = lead(crm_owner_id=MARA_ID)
    decision, _ = decide(owned_by_mara, rules(KeepOwner("owner"), TRIAGE))
    assert decision.rule == "triage"
    assert step(decision, "owner").reason == "its owner mara@example.com is not a rep in the sales teams"
    decision, _ = decide(owned_by_mara, rules(KeepOwner("owner", Owners.ACTIVE_USERS), TRIAGE))
    assert (decision.owner.rep, decision.notify_only) == ("mara@example.com", True)


def test_leads_of_an_ignored_user_are_routed_anew_even_for_any_active_user():
    keep = KeepOwner("owner", Owners.ACTIVE_USERS, ignore=frozenset({"integration@example.com"}))
    decision, _ = decide(lead(crm_owner_id=INTEGRATION_ID), rules(keep, TRIAGE))
    assert decision.rule == "triage"


def test_a_lead_owned_by_an_inactive_user_or_a_queue_is_routed_anew():
    decision, _ = decide(lead(crm_owner_id=LEAVER_ID), rules(KeepOwner("owner"), TRIAGE))
    assert step(decision, "owner").reason == "its owner leaver@example.com is not an active CRM user"
    decision, _ = decide(lead(crm_owner_id="00G000000000001"), rules(KeepOwner("owner"), TRIAGE))
    assert "not a CRM user" in step(decision, "owner").reason


def test_a_lead_is_not_kept_by_an_owner_who_let_it_lapse():
    decision, _ = decide(lead(crm_owner_id=USER_IDS["eve@example.com"]), rules(KeepOwner("owner"), TRIAGE),
                         excluded=["Eve@Example.com"])
    assert decision.rule == "triage"
    assert step(decision, "owner").candidates[0].skipped == "its owner eve@example.com already let this lead lapse"


# ------------------------------------------------------------------------------------------ account owner

NORTHWIND = DirectoryAccount("001A", "Northwind Traders GmbH", "northwind.example", USER_IDS["anna@example.com"])
ACME = DirectoryAccount("001B", "ACME, Inc.", "acme.example", USER_IDS["carla@example.com"])
GMAIL_INC = DirectoryAccount("001C", "Gmail Fans Ltd", "gmail.com", USER_IDS["dan@example.com"])
BY_ACCOUNT = rules(AccountOwner("account owner"), TRIAGE)


def test_a_lead_from_a_company_with_an_account_goes_to_the_account_owner_by_email_domain():
    decision, state = decide(lead(company="Someone Else"), BY_ACCOUNT, crm=directory(accounts=(NORTHWIND, ACME)))
    assert (decision.rule, decision.owner.rep, decision.notify_only) == ("account owner", "anna@example.com", False)
    assert step(decision, "account owner").reason.startswith("account by website domain northwind.example")
    assert state.assigned_today("anna@example.com", TEAMS, TUESDAY_MORNING) == 1


def test_a_subdomain_of_the_accounts_website_finds_the_account():
    decision, _ = decide(lead(email="kim@eu.northwind.example"), BY_ACCOUNT, crm=directory(accounts=(NORTHWIND,)))
    assert decision.owner.rep == "anna@example.com"


def test_without_an_account_for_the_domain_the_normalized_company_name_finds_it():
    decision, _ = decide(lead(email="kim@acme-mail.example", company="Acme Inc"), BY_ACCOUNT,
                         crm=directory(accounts=(NORTHWIND, ACME)))
    assert decision.owner.rep == "carla@example.com"
    assert step(decision, "account owner").reason.startswith("account by company name 'acme'")


def test_a_free_mail_domain_never_matches_an_account_then_the_company_name_may():
    gmail_lead = lead(email="kim@gmail.com", company="A.C.M.E. Inc.")
    decision, _ = decide(gmail_lead, BY_ACCOUNT, crm=directory(accounts=(GMAIL_INC, ACME)))
    assert decision.owner.rep == "carla@example.com"
    decision, _ = decide(lead(email="kim@gmail.com", company=None), BY_ACCOUNT, crm=directory(accounts=(GMAIL_INC,)))
    assert decision.rule == "triage"
    assert step(decision, "account owner").reason == "gmail.com is a free-mail domain; no company name"


def test_an_account_owner_who_cannot_take_the_lead_does_not_match_and_says_why():
    bens = DirectoryAccount("001D", "Northwind", "northwind.example", USER_IDS["ben@example.com"])
    decision, _ = decide(lead(), BY_ACCOUNT, crm=directory(accounts=(bens,)))
    assert decision.rule == "triage"
    assert skipped(decision) == {"ben@example.com": "out of office until 2026-06-12 (summer holiday)"}


def test_an_account_owned_by_someone_who_is_not_a_rep_does_not_match():
    maras = DirectoryAccount("001E", "Northwind", "northwind.example", MARA_ID)
    decision, _ = decide(lead(), BY_ACCOUNT, crm=directory(accounts=(maras,)))
    assert "owned by mara@example.com, who is not a rep" in step(decision, "account owner").reason


def test_accounts_of_one_company_with_different_owners_decide_nothing():
    twin = DirectoryAccount("001F", "Northwind UK", "northwind.example", USER_IDS["eve@example.com"])
    decision, _ = decide(lead(), BY_ACCOUNT, crm=directory(accounts=(NORTHWIND, twin)))
    assert decision.rule == "triage" and "2 different owners" in step(decision, "account owner").reason


@pytest.mark.parametrize("name, key", [
    ("ACME, Inc.", "acme"), ("Acme Inc", "acme"), ("acme ltd.", "acme"), ("Acme GmbH & Co. KG", "acme"),
    ("Acme S.A.", "acme"), ("ACME B.V.", "acme"), ("Acme AG", "acme"), ("Acme LLC", "acme"),
    ("Müller Maschinenbau GmbH", "muller maschinenbau"), ("Northwind  Traders", "northwind traders"),
    ("AG", "ag"), ("", None),
])
def test_company_names_match_without_case_punctuation_accents_or_legal_form(name, key):
    assert company_key(name) == key


@pytest.mark.parametrize("website, domain", [
    ("https://www.Acme.example/about", "acme.example"), ("acme.example", "acme.example"),
    ("http://shop.acme.example:8080", "shop.acme.example"), ("localhost", None), (None, None),
])
def test_account_websites_are_read_as_their_domain(website, domain):
    assert website_domain(website) == domain


# ------------------------------------------------------------------------------------------ product line

BY_PRODUCT_LINE = rules(ByProductLine("product line"), TRIAGE)
HOURS_AGO = [TUESDAY_MORNING - timedelta(hours=h) for h in range(4)]


def test_product_line_from_the_product_interest_field():
    decision, _ = decide(lead(product_interest="SLA", country="DE"), BY_PRODUCT_LINE)
    assert (decision.team, decision.product_line) == ("sla-desk", "sla")
    assert "the product interest field 'SLA'" in step(decision, "product line").reason


def test_product_line_from_the_latest_activitys_campaign():
    activities = (RecentActivity(HOURS_AGO[3], "whitepaper_download", "Lead Scoring Playbook", "Nurture Q4"),
                  RecentActivity(HOURS_AGO[1], "webinar_attended", "Office Hours", "Response Time Webinar"),
                  RecentActivity(HOURS_AGO[0], "page_view", "/pricing", None))
    interest = product_line_of(lead(activities=activities), rules())
    assert interest.line == "sla"
    assert interest.evidence.startswith("campaign 'Response Time Webinar' of the webinar_attended activity")


def test_the_product_interest_field_comes_before_the_activities():
    activity = RecentActivity(HOURS_AGO[0], "page_view", "/product/lead-routing", None)
    assert product_line_of(lead(product_interest="Scoring", activities=(activity,)), rules()).line == "scoring"
    assert product_line_of(lead(activities=(activity,)), rules()).line == "routing"


def test_keywords_match_whole_words_only():
    slack = RecentActivity(HOURS_AGO[0], "page_view", "Slack integration", "Translation tools")
    assert product_line_of(lead(activities=(slack,)), rules()) is None
    assert product_line_of(lead(activities=(RecentActivity(HOURS_AGO[0], asset="/blog/sla-for-sales"),)),
                           rules()).line == "sla"


def test_an_org_with_one_lead_record_per_product_line_routes_by_the_records_own_line():
    per_line = rules(ByProductLine("product line"), TRIAGE, lead_records=LeadRecords.PER_PRODUCT_LINE)
    decision, _ = decide(lead(product_interest="Scoring", record_product_line="SLA", country="DE"), per_line)
    assert decision.team == "sla-desk"
    assert "the CRM record's product line 'SLA'" in step(decision, "product line").reason
    decision, _ = decide(lead(product_interest="Scoring", country="DE"), per_line)
    assert decision.rule == "triage"
    assert step(decision, "product line").reason == "no product line: its CRM record names none of the product lines"


def test_a_product_line_sold_by_several_teams_goes_to_the_team_of_the_leads_country():
    decision, _ = decide(lead(product_interest="scoring", country="AT"), BY_PRODUCT_LINE)
    assert decision.team == "dach"
    anyone = rules(ByProductLine("product line", only_during_working_hours=False), TRIAGE)
    decision, _ = decide(lead(product_interest="scoring", country="US"), anyone)
    assert decision.team == "north-america" and decision.owner.rep in ("dan@example.com", "eve@example.com")


def test_a_product_line_nobody_sells_in_the_leads_country_does_not_match():
    decision, _ = decide(lead(product_interest="scoring", country="JP"), BY_PRODUCT_LINE)
    assert step(decision, "product line").reason.endswith("no team sells it in JP")


def test_a_product_line_may_name_its_own_rep():
    own_rep = RoutingRules((ByProductLine("product line"), TRIAGE),
                           (ProductLine("sla", rep="gus@example.com"),))
    decision, _ = decide(lead(product_interest="sla"), own_rep)
    assert (decision.owner.rep, decision.team) == ("gus@example.com", "sla-desk")


def test_a_team_may_hand_its_leads_to_its_own_fallback_instead_of_a_rep():
    to_queue = rules(ByProductLine("product line", Assign.TEAM_FALLBACK), TRIAGE)
    decision, _ = decide(lead(product_interest="routing", country="US"), to_queue)
    assert (decision.rule, decision.owner.queue, decision.team) == ("product line", "NA Inbound", "north-america")


# ------------------------------------------------------------------------------------------ territory

def test_territory_gives_the_lead_to_the_team_covering_its_country_through_a_region():
    decision, _ = decide(lead(country="ch"), rules(ByTerritory("territory"), TRIAGE))
    assert (decision.rule, decision.team) == ("territory", "dach")


def test_territory_does_not_match_a_country_no_team_covers_or_a_lead_without_one():
    decision, _ = decide(lead(country="JP"), rules(ByTerritory("territory"), TRIAGE))
    assert step(decision, "territory").reason == "no team's territory covers JP"
    decision, _ = decide(lead(), rules(ByTerritory("territory"), TRIAGE))
    assert step(decision, "territory").reason == "the lead has no country"


# ------------------------------------------------------------------------------------------ who is skipped

def test_a_rep_out_of_office_is_skipped_with_the_day_they_are_away_until():
    decision, _ = decide(lead(), rules(DACH_ROUND_ROBIN, TRIAGE))
    assert skipped(decision) == {"ben@example.com": "out of office until 2026-06-12 (summer holiday)"}
    assert decision.owner.rep in ("anna@example.com", "carla@example.com")


def test_a_rep_outside_working_hours_is_skipped():
    decision, _ = decide(lead(), rules(DACH_ROUND_ROBIN, TRIAGE), now=THURSDAY_MORNING)
    assert skipped(decision)["carla@example.com"] == "outside working hours (back Mon 2026-06-15 09:00 Europe/Berlin)"
    assert decision.owner.rep == "anna@example.com"


def test_a_rep_outside_working_hours_is_not_skipped_when_the_rule_says_so():
    anytime = RoundRobinIn("dach round robin", "dach", only_during_working_hours=False)
    state = RoutingState()
    owners = []
    for lead_id in range(3):
        decision, state = decide(lead(lead_id=lead_id), rules(anytime, TRIAGE), now=THURSDAY_MORNING, state=state)
        owners.append(decision.owner.rep)
    assert "carla@example.com" in owners and "carla@example.com" not in skipped(decision)


def test_a_rep_at_their_daily_capacity_is_skipped():
    three_today = tuple(TUESDAY_MORNING - timedelta(minutes=m) for m in (10, 20, 30))
    decision, _ = decide(lead(), rules(DACH_ROUND_ROBIN, TRIAGE),
                         state=RoutingState.of(TEAMS, assigned={"anna@example.com": three_today}))
    assert skipped(decision)["anna@example.com"] == "at capacity 3/3"
    assert decision.owner.rep == "carla@example.com"


def test_capacity_counts_leads_given_in_the_reps_own_local_day():
    dan_afternoon = datetime(2026, 6, 9, 13, tzinfo=NEW_YORK)
    last_night = (datetime(2026, 6, 8, 22, tzinfo=NEW_YORK), datetime(2026, 6, 8, 23, tzinfo=NEW_YORK))
    assert all(t.astimezone(UTC).date() == date(2026, 6, 9) for t in last_night)  # "today" in UTC, not in New York
    state = RoutingState.of(TEAMS, assigned={"dan@example.com": last_night})
    assert state.assigned_today("dan@example.com", TEAMS, dan_afternoon) == 0
    this_morning = state.with_lead_given("dan@example.com", datetime(2026, 6, 9, 9, tzinfo=NEW_YORK), TEAMS)
    assert this_morning.with_lead_given("dan@example.com", dan_afternoon, TEAMS).assigned_today(
        "dan@example.com", TEAMS, dan_afternoon) == 2
    assert this_morning.given["dan@example.com"] == {date(2026, 6, 8): 2, date(2026, 6, 9): 1}


def test_a_rep_with_no_active_crm_user_cannot_take_leads():
    decision, _ = decide(lead(), rules(DACH_ROUND_ROBIN, TRIAGE),
                         crm=directory(inactive=("anna@example.com",), missing=("carla@example.com",)))
    assert skipped(decision) == {"anna@example.com": "no active CRM user", "carla@example.com": "no active CRM user",
                                 "ben@example.com": "out of office until 2026-06-12 (summer holiday)"}
    assert decision.rule == "triage"


def test_reps_are_matched_to_crm_users_by_email_whatever_its_case():
    decision, _ = decide(lead(), rules(DACH_ROUND_ROBIN, TRIAGE))  # the directory holds upper-cased e-mails
    assert decision.owner.crm_user_id == USER_IDS[decision.owner.rep]


# ------------------------------------------------------------------------------------------ fallback

def test_when_nobody_in_the_picked_team_can_take_the_lead_the_teams_fallback_takes_it():
    at_night = datetime(2026, 6, 9, 3, tzinfo=NEW_YORK)
    decision, _ = decide(lead(country="US"), rules(ByTerritory("territory"), TRIAGE), now=at_night)
    assert (decision.rule, decision.owner.queue, decision.team) == ("triage", "NA Inbound", "north-america")
    assert step(decision, "territory").reason == "territory US: nobody in team north-america can take it"
    assert set(skipped(decision)) == {"dan@example.com", "eve@example.com"}


def test_when_no_team_was_picked_the_overall_fallback_takes_it():
    decision, _ = decide(lead(country="JP"), rules(ByTerritory("territory"), TRIAGE))
    assert (decision.rule, decision.owner.queue, decision.team) == ("triage", "Lead Triage", None)


def test_a_fallback_rule_may_name_its_own_rep_and_a_rep_who_cannot_take_it_is_passed_over():
    to_gus = FallbackTo("to gus", Fallback(rep="gus@example.com"))
    decision, _ = decide(lead(country="JP"), rules(to_gus))
    assert (decision.owner.rep, decision.notify_only) == ("gus@example.com", False)
    decision, _ = decide(lead(country="JP"), rules(to_gus), excluded=["gus@example.com"])
    assert decision.owner.queue == "Lead Triage"
    assert skipped(decision) == {"gus@example.com": "already let this lead lapse"}


def test_with_no_rule_matching_the_overall_fallback_of_the_teams_file_takes_the_lead():
    decision, _ = decide(lead(country="JP"), rules(ByTerritory("territory")))
    assert (decision.rule, decision.kind, decision.owner.queue) == ("teams.yaml fallback", "fallback", "Lead Triage")


# ------------------------------------------------------------------------------------------ reassignment

def test_a_reassigned_lead_never_goes_back_to_a_rep_who_let_it_lapse():
    everything = rules(KeepOwner("owner"), AccountOwner("account owner"), ByProductLine("product line"),
                       ByTerritory("territory"), DACH_ROUND_ROBIN, TRIAGE)
    crm = directory(accounts=(NORTHWIND,))
    lapsed: list[str] = []
    owner_id = None
    for _ in range(3):
        decision, _ = decide(lead(country="DE", product_interest="routing", crm_owner_id=owner_id), everything,
                             crm=crm, excluded=lapsed)
        if decision.owner.is_queue:
            break
        assert decision.owner.rep not in lapsed
        lapsed.append(decision.owner.rep)
        owner_id = decision.owner.crm_user_id  # the CRM now names them owner: keep_owner must not keep it
    assert lapsed == ["anna@example.com", "carla@example.com"]  # Ben is away; then nobody is left
    assert decision.owner.queue == "Lead Triage"
    assert {"anna@example.com", "carla@example.com"} <= {r for r, why in skipped(decision).items()
                                                         if why.endswith("already let this lead lapse")}


# ------------------------------------------------------------------------------------------ the decision

def test_the_decision_keeps_every_rule_tried_and_every_candidate_considered():
    everything = rules(KeepOwner("owner"), AccountOwner("account owner"), ByProductLine("product line"), TRIAGE)
    decision, _ = decide(lead(email="kim@gmail.com", company=None, product_interest="scoring", country="DE"),
                         everything)
    assert [(s.rule, s.matched) for s in decision.path] == [("owner", False), ("account owner", False),
                                                            ("product line", True)]
    considered = {c.rep: c for c in step(decision, "product line").candidates}
    assert list(considered) == ["anna@example.com", "ben@example.com", "carla@example.com"]  # the team's order
    assert considered["anna@example.com"].chosen and considered["anna@example.com"].note.startswith("round robin")
    assert considered["ben@example.com"].skipped.startswith("out of office")
    assert (considered["carla@example.com"].chosen, considered["carla@example.com"].note) == (False, "not their turn")
    record = json.loads(json.dumps(decision.to_json()))
    assert record["owner"] == {"kind": "rep", "email": "anna@example.com", "crm_user_id": "005000", "name": "Anna"}
    assert record["path"][2]["candidates"][1]["skipped"] == "out of office until 2026-06-12 (summer holiday)"
    text = "\n".join(decision.explain())
    assert text.splitlines()[0].startswith("kim@gmail.com goes to Anna <anna@example.com> (team dach): "
                                           "rule 'product line'")
    assert "2. account owner (account_owner): no: gmail.com is a free-mail domain; no company name" in text


def test_the_routing_state_survives_a_round_trip_through_json():
    state = RoutingState()
    for lead_id in range(5):
        _, state = decide(lead(lead_id=lead_id), rules(DACH_ROUND_ROBIN), state=state)
    again = RoutingState.from_json(json.loads(json.dumps(state.to_json())))
    assert again == state
    assert again.round_robin_of("dach").assignments == 5


# ------------------------------------------------------------------------------------------ round robin

SCALE = int(os.environ.get("HANDOFF_PROPERTY_SCALE", "1"))  # e.g. 20 for a deeper search; the suite uses 1
PROPERTIES = settings(derandomize=True, database=None, deadline=None, max_examples=25 * SCALE,
                      suppress_health_check=[HealthCheck.too_slow])
WEIGHTS = st.lists(st.sampled_from([Fraction(1), Fraction(2), Fraction(3, 2), Fraction(1, 2), Fraction(5),
                                    Fraction(7, 10), Fraction(25, 4), Fraction(10), Fraction(1, 10)]),
                   min_size=1, max_size=8)


def share_out(weights: dict[str, Fraction], leads: int, state: RoundRobinState) -> tuple[dict[str, int],
                                                                                         RoundRobinState]:
    counts = dict.fromkeys(weights, 0)
    for _ in range(leads):
        pick = next_rep(state, weights, weights)
        counts[pick.rep] += 1
        state = pick.state
    return counts, state


def assert_within_one_lead_of_each_share(counts: dict[str, int], weights: dict[str, Fraction]) -> None:
    total, leads = sum(weights.values()), sum(counts.values())
    for rep, weight in weights.items():
        assert abs(counts[rep] - leads * weight / total) < 1, (rep, counts, weights)


@PROPERTIES
@given(WEIGHTS)
def test_over_1000_assignments_every_rep_is_within_one_lead_of_their_weighted_share(weights):
    team = {f"rep{n}@example.com": w for n, w in enumerate(weights)}
    state, counts = RoundRobinState("team"), dict.fromkeys(team, 0)
    for _ in range(1000):
        pick = next_rep(state, team, team)
        counts[pick.rep] += 1
        state = pick.state
        assert_within_one_lead_of_each_share(counts, team)  # after every lead, not only at the end


@PROPERTIES
@given(WEIGHTS, st.lists(st.integers(1, 120), min_size=1, max_size=40))
def test_the_share_holds_when_the_1000_assignments_are_split_over_many_runs(weights, run_sizes):
    team = {f"rep{n}@example.com": w for n, w in enumerate(weights)}
    sizes, left = [], 1000
    for size in run_sizes:
        sizes.append(min(size, left))
        left -= sizes[-1]
    sizes.append(left)
    stored, counts = RoundRobinState("team").to_json(), dict.fromkeys(team, 0)
    for size in sizes:  # each run reads the state the last one stored, as JSON
        run_counts, state = share_out(team, size, RoundRobinState.from_json(json.loads(json.dumps(stored))))
        counts = {rep: counts[rep] + run_counts[rep] for rep in team}
        stored = state.to_json()
    assert sum(counts.values()) == 1000
    assert_within_one_lead_of_each_share(counts, team)


@PROPERTIES
@given(st.lists(st.tuples(st.sampled_from(["join", "leave", "reweight"]), st.integers(0, 7),
                          st.sampled_from([Fraction(1), Fraction(3, 2), Fraction(4), Fraction(1, 3)]),
                          st.integers(0, 60)), min_size=1, max_size=8))
def test_when_reps_join_or_leave_between_runs_everyone_stays_within_one_lead_of_what_they_earned(changes):
    """Earned: the leads a rep was entitled to while in the team (their weight's share of each lead). A newcomer
    starts with nothing owed; a leaver's standing is shared by the others."""
    team = {"rep0@example.com": Fraction(1), "rep1@example.com": Fraction(2)}
    state = RoundRobinState("team")
    for action, who, weight, leads in changes:
        rep = f"rep{who}@example.com"
        if action == "leave" and len(team) > 1:
            team.pop(rep, None)
        elif action != "leave":
            team[rep] = weight
        _, state = share_out(team, leads, RoundRobinState.from_json(state.to_json()))
        state = state.with_members(team)
        assert set(state.credits) == set(team)
        assert sum(state.credits.values()) == 0
        assert all(-1 < credit < 1 for credit in state.credits.values()), state.credits


def test_a_rep_who_joins_gets_their_share_from_then_on_with_no_backlog():
    team = {"anna": Fraction(1), "ben": Fraction(1)}
    _, state = share_out(team, 500, RoundRobinState("team"))
    counts, _ = share_out({**team, "carla": Fraction(1)}, 30, state)
    assert counts["carla"] in (9, 10, 11)  # a third of 30, give or take the standing the others had


def test_skipped_reps_neither_earn_nor_lose_credit():
    team = {"anna": Fraction(1), "ben": Fraction(1)}
    state = next_rep(RoundRobinState("team"), team, team).state  # anna (tie: alphabetical), ben now owed half
    for _ in range(10):
        state = next_rep(state, team, ["anna"]).state  # ben out of office
    assert state.credit("ben") == Fraction(1, 2)
    assert next_rep(state, team, team).rep == "ben"


@PROPERTIES
@given(WEIGHTS, st.integers(0, 2 ** 32), st.sampled_from([0.1, 0.3, 0.5, 0.7]))
def test_with_reps_skipped_at_any_time_everyone_stays_within_two_leads_of_what_they_earned_while_available(
        weights, seed, skip_rate):
    """Earned: a rep's weight's share of each lead shared out while they could take one (not out of office, not
    at capacity). Skips break the proof for a fixed team (the module's docstring); searching for the worst case
    finds about 1.3 leads, so two holds with room, and a rule that lets a skip cost a rep (their credit
    forgotten while away) strays past three."""
    team = {f"rep{n}@example.com": w for n, w in enumerate(weights)}
    skips = random.Random(seed)
    state, received, earned = RoundRobinState("team"), dict.fromkeys(team, 0), dict.fromkeys(team, Fraction(0))
    for _ in range(600):
        present = [rep for rep in team if skips.random() >= skip_rate] or [skips.choice(list(team))]
        total = sum(team[rep] for rep in present)
        for rep in present:
            earned[rep] += team[rep] / total
        pick = next_rep(state, team, present)
        received[pick.rep] += 1
        state = RoundRobinState.from_json(pick.state.to_json())
        assert all(abs(received[rep] - earned[rep]) < 2 for rep in team), (received, earned)


def test_ties_go_to_the_larger_weight_then_the_email_in_alphabetical_order():
    assert next_rep(RoundRobinState("t"), {"b": 1, "a": 1}, ["a", "b"]).rep == "a"
    assert next_rep(RoundRobinState("t"), {"b": 2, "a": 1, "c": 1}, ["a", "b", "c"]).rep == "b"


def test_a_team_that_is_not_weighted_shares_evenly():
    state, owners = RoutingState(), []
    for lead_id in range(6):
        decision, state = decide(lead(lead_id=lead_id, product_interest="sla"), BY_PRODUCT_LINE, state=state)
        owners.append(decision.owner.rep)
    assert sorted(owners) == ["finn@example.com"] * 3 + ["gus@example.com"] * 3


def test_a_state_that_is_not_a_round_robin_state_is_refused():
    with pytest.raises(ValueError, match="not a round-robin state"):
        RoundRobinState.from_json({"team": "t", "credits": {"a": "1/0"}})


# ------------------------------------------------------------------------------------------ routing.yaml

def test_the_shipped_routing_file_loads_against_the_shipped_teams():
    routing = load_routing(load_teams())
    assert [r.kind for r in routing.rules] == ["keep_owner", "account_owner", "product_line", "territory",
                                               "product_line", "territory", "fallback"]
    assert [p.name for p in routing.product_lines] == ["scoring", "routing", "sla"]
    assert {"gmail.com", "mailbox.org"} <= routing.free_mail_domains


def test_the_test_organisations_routing_file_loads_and_a_pasted_copy_loads_the_same():
    path = DATA / "routing.yaml"
    assert load_routing(TEAMS, path) == load_routing(TEAMS, Path("pasted.yaml"), path.read_text())


def test_every_mistake_in_the_routing_file_is_named_with_its_line(tmp_path):
    path = tmp_path / "routing.yaml"
    path.write_text(
        "lead_records: per_account\n"                       # 1
        "free_mail_domains: [gmail.com, not a domain]\n"    # 2
        "product_lines:\n"                                  # 3
        "  scoring: {keywords: [lead scoring]}\n"           # 4
        "  hardware: {keywords: [printers]}\n"              # 5
        "  sla: {team: support}\n"                          # 6
        "rules:\n"                                          # 7
        "  - name: owner\n"                                 # 8
        "    kind: keep_owner\n"                            # 9
        "    owners: everyone\n"                            # 10
        "  - name: owner\n"                                 # 11
        "    kind: round_robbin\n"                          # 12
        "  - name: by team\n"                               # 13
        "    kind: round_robin\n"                           # 14
        "    team: emea\n"                                  # 15
        "    only_during_workinghours: false\n"             # 16
        "  - name: last\n"                                  # 17
        "    kind: fallback\n"                              # 18
        "    rep: nobody@example.com\n"                     # 19
        "    kind: fallback\n"                              # 20
        "  - name: after last\n"                            # 21
        "    kind: territory\n")                            # 22
    with pytest.raises(RoutingConfigError) as error:
        load_routing(TEAMS, path)
    problems = [p.removeprefix(f"{path}:") for p in error.value.problems]
    assert problems == [
        "1: the routing file lead_records must be one of per_person, per_product_line, not 'per_account'",
        "2: free_mail_domains: 'not a domain' is not an e-mail domain (such as gmail.com)",
        "5: product line 'hardware': no team in " f"{TEAMS.source} sells it (their product lines: routing, "
        "scoring, sla); add it to a team's product_lines or name team: here",
        "6: product line 'sla': unknown team 'support' (teams: dach, north-america, sla-desk)",
        "10: rule 'owner' owners must be one of reps, active_users, not 'everyone'",
        "11: rule name 'owner' is already used on line 8",
        "12: unknown rule kind 'round_robbin' in rule 'owner' (known: keep_owner, account_owner, product_line, "
        "territory, round_robin, fallback)",
        "15: rule 'by team': unknown team 'emea' (teams: dach, north-america, sla-desk)",
        "16: unknown key 'only_during_workinghours' in rule 'by team' (did you mean 'only_during_working_hours'?)",
        "19: rule 'last': unknown rep nobody@example.com (a rep is listed under reps: in teams.yaml)",
        "20: 'kind' is given twice in rule 'last' (first on line 18); say it once",
        "21: rule 'after last' is never tried: the fallback rule on line 17 always decides",
    ]


def test_a_routing_file_that_is_not_yaml_names_its_line(tmp_path):
    path = tmp_path / "routing.yaml"
    path.write_text("rules:\n  - name: a\n    kind: [unclosed\n")
    with pytest.raises(Exception, match=r"routing.yaml:\d+: invalid YAML"):
        load_routing(TEAMS, path)


def test_describe_routing_renders_each_rule_and_product_line_as_markdown():
    text = describe_routing(load_routing(TEAMS, DATA / "routing.yaml"), TEAMS)
    assert "| 3 | product line at work | product_line | the team selling the lead's product line, round robin, " \
           "reps at work only |" in text
    assert "| sla | sla, service level, response time | sla-desk |" in text
    assert text.endswith("When no rule matches: the overall fallback of teams.yaml, queue Lead Triage.\n")


def test_the_shipped_files_are_the_ones_loaded_by_default(tmp_path):
    copy = tmp_path / "routing.yaml"
    shutil.copy(ROUTING_FILE, copy)
    assert load_routing(load_teams(), copy) == load_routing(load_teams())

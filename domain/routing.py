"""Routing a sales-ready lead to its owner: the rules of config/routing.yaml tried in order (first match wins), as a
pure function of the lead, the sales teams, the CRM's directory, the routing state and `now`.

Rules that pick a team (product_line, territory) choose the owner within it themselves, as their `assign` says
(round robin by default); when nobody in the team can take the lead the rule does not match, routing goes on, and a
later fallback rule uses that team's fallback.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from typing import Any, Iterable, Mapping

from domain.crm_directory import CrmDirectory, company_key
from domain.round_robin import RoundRobinState, next_rep
from domain.routing_decision import Candidate, Owner, RoutingDecision, RuleTried
from domain.routing_rules import (
    AccountOwner, Assign, ByProductLine, ByTerritory, FallbackTo, KeepOwner, LeadRecords, LeadToRoute, Owners,
    RoundRobinIn, RoutingRule, RoutingRules, product_line_of,
)
from domain.teams import DaysAway, Fallback, Rep, SalesTeams, Team

# ------------------------------------------------------------------------------------------ state between leads

@dataclass(frozen=True)
class RoutingState:
    """What routing carries from lead to lead and run to run: each team's round robin, and how many leads each rep
    was given on each of their own local days (for their daily capacity; the last two days are kept)."""

    round_robin: Mapping[str, RoundRobinState] = field(default_factory=dict)
    given: Mapping[str, Mapping[date, int]] = field(default_factory=dict)  # rep e-mail -> {local date: leads}

    @classmethod
    def of(cls, teams: SalesTeams, round_robin: Iterable[RoundRobinState] = (),
           assigned: Mapping[str, Iterable[datetime]] = {}) -> RoutingState:
        """From the stored round robins and the moments each rep was given a lead lately (as the store keeps them)."""
        state = cls({rr.team: rr for rr in round_robin})
        for rep, moments in assigned.items():
            for at in moments:
                state = state.with_lead_given(rep, at, teams)
        return state

    def round_robin_of(self, team: str) -> RoundRobinState:
        return self.round_robin.get(team) or RoundRobinState(team)

    def with_round_robin(self, state: RoundRobinState) -> RoutingState:
        return replace(self, round_robin={**self.round_robin, state.team: state})

    def assigned_today(self, rep: str, teams: SalesTeams, now: datetime) -> int:
        return self.given.get(rep, {}).get(_local_day(rep, teams, now), 0)

    def with_lead_given(self, rep: str, at: datetime, teams: SalesTeams) -> RoutingState:
        day = _local_day(rep, teams, at)
        days = {d: n for d, n in self.given.get(rep, {}).items() if d >= day - timedelta(days=1)}
        days[day] = days.get(day, 0) + 1
        return replace(self, given={**self.given, rep: days})

    def to_json(self) -> dict[str, Any]:
        return {"round_robin": {team: state.to_json() for team, state in sorted(self.round_robin.items())},
                "given": {rep: {d.isoformat(): n for d, n in sorted(days.items())}
                          for rep, days in sorted(self.given.items())}}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RoutingState:
        return cls({team: RoundRobinState.from_json(state) for team, state in (data.get("round_robin") or {}).items()},
                   {rep: {date.fromisoformat(d): int(n) for d, n in days.items()}
                    for rep, days in (data.get("given") or {}).items()})


def _local_day(rep: str, teams: SalesTeams, at: datetime) -> date:
    return at.astimezone(teams.calendar_of(rep).zone).date()


# ------------------------------------------------------------------------------------------ routing

def route(lead: LeadToRoute, *, rules: RoutingRules, teams: SalesTeams, directory: CrmDirectory,
          state: RoutingState, now: datetime,
          excluded_reps: Iterable[str] = ()) -> tuple[RoutingDecision, RoutingState]:
    """The decision for `lead` and the routing state after it. `excluded_reps` (e-mails) let this lead lapse before:
    no rule gives it back to them."""
    return _Routing(lead, rules, teams, directory, state, now, excluded_reps).decide()


@dataclass
class _Outcome:
    tried: RuleTried
    owner: Owner | None = None
    team: str | None = None
    notify_only: bool = False


class _Routing:
    """One lead's way through the rules; holds the state as rules change it."""

    def __init__(self, lead: LeadToRoute, rules: RoutingRules, teams: SalesTeams, directory: CrmDirectory,
                 state: RoutingState, now: datetime, excluded: Iterable[str]) -> None:
        self.lead, self.rules, self.teams, self.directory = lead, rules, teams, directory
        self.state, self.now = state, now
        self.excluded = frozenset(e.strip().lower() for e in excluded)
        self.interest = product_line_of(lead, rules)
        self.picked_team: str | None = None  # the first team a rule picked, for a later fallback

    def decide(self) -> tuple[RoutingDecision, RoutingState]:
        path: list[RuleTried] = []
        for rule in self.rules.rules:
            outcome = self.attempt(rule)
            path.append(outcome.tried)
            if outcome.owner is not None:
                return self.decision(rule.name, rule.kind, outcome, path)
        outcome = self.last_resort()
        path.append(outcome.tried)
        return self.decision(outcome.tried.rule, "fallback", outcome, path)

    def decision(self, rule: str, kind: str, outcome: _Outcome, path: list[RuleTried]) -> tuple[RoutingDecision,
                                                                                                 RoutingState]:
        owner = outcome.owner
        if owner.rep and not outcome.notify_only:
            self.state = self.state.with_lead_given(owner.rep, self.now, self.teams)
        return RoutingDecision(
            lead_id=self.lead.lead_id, email=self.lead.email, rule=rule, kind=kind, owner=owner,
            notify_only=outcome.notify_only, decided_at=self.now, path=tuple(path), team=outcome.team,
            product_line=self.interest.line if self.interest else None), self.state

    def attempt(self, rule: RoutingRule) -> _Outcome:
        handler = {KeepOwner: self.keep_owner, AccountOwner: self.account_owner, ByProductLine: self.product_line,
                   ByTerritory: self.territory, RoundRobinIn: self.round_robin_rule, FallbackTo: self.fallback}
        return handler[type(rule)](rule)

    # ---------------------------------------------------------------------------------- the rules

    def keep_owner(self, rule: KeepOwner) -> _Outcome:
        owner_id = self.lead.crm_owner_id
        user = self.directory.user(owner_id)
        why = ("the lead has no CRM owner" if not owner_id
               else f"its owner {owner_id} is not a CRM user (a queue?)" if user is None
               else f"its owner {user.email} is not an active CRM user" if not user.active or not user.email
               else None)
        if why:
            return self.no(rule, why)
        email = user.email.strip().lower()
        rep = self.teams.rep(email)
        if email in rule.ignore:
            why = f"its owner {email} is one whose leads are routed anew"
        elif rep is None and rule.owners is Owners.REPS:
            why = f"its owner {email} is not a rep in the sales teams"
        elif email in self.excluded:
            why = f"its owner {email} already let this lead lapse"
        if why:
            return self.no(rule, why, (Candidate(email, skipped=why),))
        owner = Owner(rep=email, crm_user_id=user.crm_id, name=(rep.name if rep else "") or user.name)
        return _Outcome(RuleTried(rule.name, rule.kind, True, f"{owner} owns it in the CRM: notify them",
                                  (Candidate(email, chosen=True, note="current owner"),)),
                        owner, rep.home_team if rep else None, notify_only=True)

    def account_owner(self, rule: AccountOwner) -> _Outcome:
        found, how = self.accounts()
        if not found:
            return self.no(rule, how)
        owners = list(dict.fromkeys(a.owner_id for a in found if a.owner_id))
        names = ", ".join(f"{a.name} ({a.crm_id})" for a in found)
        if len(owners) != 1:
            return self.no(rule, f"{how}: accounts {names} have " + ("no owner" if not owners else
                                                                      f"{len(owners)} different owners"))
        user = self.directory.user(owners[0])
        rep = self.teams.rep(user.email) if user and user.email else None
        if rep is None:
            who = user.email if user and user.email else owners[0]
            return self.no(rule, f"{how}: account {names} is owned by {who}, who is not a rep in the sales teams")
        why = self.why_not(rep, out_of_office=True, hours=rule.only_during_working_hours,
                           capacity=rule.respect_capacity)
        if why:
            return self.no(rule, f"{how}: its owner cannot take it", (Candidate(rep.email, skipped=why),))
        return self.to_rep(rule, rep, f"{how}: account {names}", note="account owner")

    def product_line(self, rule: ByProductLine) -> _Outcome:
        if self.interest is None:
            per_record = self.rules.lead_records is LeadRecords.PER_PRODUCT_LINE
            return self.no(rule, "no product line: " + ("its CRM record names none of the product lines" if per_record
                                                        else "neither its product interest nor its recent "
                                                             "activities name one"))
        line, evidence = self.interest.line, self.interest.evidence
        product = self.rules.product_line(line)
        if product and product.rep:
            rep = self.teams.rep(product.rep)
            why = self.why_not(rep, out_of_office=True, hours=rule.only_during_working_hours, capacity=True)
            if why:
                return self.no(rule, f"product line {line} from {evidence}: its rep cannot take it",
                               (Candidate(rep.email, skipped=why),))
            return self.to_rep(rule, rep, f"product line {line} from {evidence}: sold by {rep.email}")
        if product and product.team:
            teams = (self.teams.team(product.team),)
        else:
            teams = self.teams.teams_for(line, self.lead.country) if self.lead.country else self.teams.teams_for(line)
        where = f" in {self.lead.country}" if self.lead.country else ""
        if not teams:
            return self.no(rule, f"product line {line} from {evidence}: no team sells it{where}")
        return self.in_teams(rule, teams, f"product line {line} from {evidence}")

    def territory(self, rule: ByTerritory) -> _Outcome:
        country = (self.lead.country or "").strip().upper()
        if not country:
            return self.no(rule, "the lead has no country")
        teams = tuple(t for t in self.teams.teams if country in t.territories
                      and (not rule.teams or t.name in rule.teams))
        if not teams:
            return self.no(rule, f"no team's territory covers {country}")
        return self.in_teams(rule, teams, f"territory {country}")

    def round_robin_rule(self, rule: RoundRobinIn) -> _Outcome:
        return self.in_teams(rule, (self.teams.team(rule.team),), f"team {rule.team}")

    def fallback(self, rule: FallbackTo) -> _Outcome:
        options = [rule.to] if rule.to else []
        if self.picked_team:
            options.append(self.teams.fallback_for(self.picked_team))
        options.append(self.teams.fallback)
        skipped = []
        for option in dict.fromkeys(options):
            owner, candidate = self.fallback_owner(option)
            if owner:
                return _Outcome(RuleTried(rule.name, rule.kind, True, f"nobody else could take it: {option}",
                                          tuple(skipped) + ((candidate,) if candidate else ())),
                                owner, self.picked_team)
            skipped.append(candidate)
        return self.no(rule, "no fallback could take it", tuple(skipped))

    def last_resort(self) -> _Outcome:
        """No rule matched: the overall fallback of teams.yaml takes the lead, whoever it is."""
        fallback = self.teams.fallback
        owner, _ = self.fallback_owner(fallback)
        if owner is None:  # a rep without an active CRM user: the flow's CRM write will say so
            owner = Owner(rep=fallback.rep, name=getattr(self.teams.rep(fallback.rep), "name", ""))
        return _Outcome(RuleTried("teams.yaml fallback", "fallback", True,
                                  f"no rule matched: the overall fallback, {fallback}"), owner, self.picked_team)

    # ---------------------------------------------------------------------------------- teams and reps

    def in_teams(self, rule: ByProductLine | ByTerritory | RoundRobinIn, teams: Iterable[Team],
                 why: str) -> _Outcome:
        """The first of `teams` (in the file's order) with someone who can take the lead chooses its owner."""
        assign = getattr(rule, "assign", Assign.ROUND_ROBIN)
        candidates: list[Candidate] = []
        for team in teams:
            self.picked_team = self.picked_team or team.name
            if assign is Assign.TEAM_FALLBACK:
                owner, candidate = self.fallback_owner(self.teams.fallback_for(team))
                candidates += [candidate] if candidate else []
            else:
                owner, considered = self.round_robin(team, rule.only_during_working_hours)
                candidates += considered
            if owner:
                return _Outcome(RuleTried(rule.name, rule.kind, True, f"{why}: team {team.name}", tuple(candidates)),
                                owner, team.name)
        names = [t.name for t in teams]
        where = f"team {names[0]}" if len(names) == 1 else f"teams {', '.join(names)}"
        return self.no(rule, f"{why}: nobody in {where} can take it", tuple(candidates))

    def round_robin(self, team: Team, hours: bool) -> tuple[Owner | None, list[Candidate]]:
        members = self.teams.reps_in(team)
        weights = {rep.email: rep.weight if team.round_robin.weighted else 1 for rep in members}
        skipped = {rep.email: self.why_not(rep, out_of_office=team.round_robin.skip_out_of_office, hours=hours,
                                           capacity=team.round_robin.respect_capacity) for rep in members}
        pick = next_rep(self.state.round_robin_of(team.name), weights, [r for r, why in skipped.items() if not why])
        if pick.rep is None:
            return None, [Candidate(r, team.name, skipped=why) for r, why in skipped.items()]
        self.state = self.state.with_round_robin(pick.state)
        candidates = [Candidate(r, team.name, skipped=why, chosen=r == pick.rep,
                                note=pick.reason if r == pick.rep else "" if why else "not their turn")
                      for r, why in skipped.items()]
        return self.owner_of(self.teams.rep(pick.rep)), candidates

    def fallback_owner(self, fallback: Fallback) -> tuple[Owner | None, Candidate | None]:
        if fallback.queue:
            return Owner(queue=fallback.queue), None
        rep = self.teams.rep(fallback.rep)
        why = self.why_not(rep, out_of_office=False, hours=False, capacity=False) if rep else "not a rep"
        if why:
            return None, Candidate(fallback.rep, skipped=why, note="fallback")
        return self.owner_of(rep), Candidate(rep.email, chosen=True, note="fallback")

    def why_not(self, rep: Rep, *, out_of_office: bool, hours: bool, capacity: bool) -> str | None:
        """Why `rep` cannot take this lead now, or None when they can."""
        if rep.email in self.excluded:
            return "already let this lead lapse"
        if self.directory.active_user(rep.email) is None:
            return "no active CRM user"
        if out_of_office and (away := self.absence(rep)):
            return away
        calendar = self.teams.calendar_of(rep)
        if hours and not calendar.is_working(self.now):
            back = calendar.next_working_moment(self.now).astimezone(calendar.zone)
            return f"outside working hours (back {back:%a %Y-%m-%d %H:%M} {calendar.timezone})"
        if capacity and rep.daily_capacity is not None:
            given = self.state.assigned_today(rep.email, self.teams, self.now)
            if given >= rep.daily_capacity:
                return f"at capacity {given}/{rep.daily_capacity}"
        return None

    def absence(self, rep: Rep) -> str | None:
        zone = self.teams.calendar_of(rep).zone
        for away in rep.out_of_office:
            if away.covers(self.now, zone):
                until = away.last_day if isinstance(away, DaysAway) else f"{away.end:%Y-%m-%d %H:%M} UTC"
                return f"out of office until {until}" + (f" ({away.reason})" if away.reason else "")
        return None

    def owner_of(self, rep: Rep) -> Owner:
        user = self.directory.active_user(rep.email)
        return Owner(rep=rep.email, crm_user_id=user.crm_id if user else None, name=rep.name or (user.name if user
                                                                                                else ""))

    def to_rep(self, rule: RoutingRule, rep: Rep, why: str, note: str = "") -> _Outcome:
        return _Outcome(RuleTried(rule.name, rule.kind, True, why, (Candidate(rep.email, chosen=True, note=note),)),
                        self.owner_of(rep), rep.home_team)

    def accounts(self) -> tuple[tuple, str]:
        """The accounts the lead's company has, by e-mail domain then by company name, and how they were found."""
        tried = []
        domain = self.lead.email_domain
        if domain and domain in self.rules.free_mail_domains:
            tried.append(f"{domain} is a free-mail domain")
        elif domain:
            found = self.directory.accounts_by_domain(domain)
            if found:
                return found[1], f"account by website domain {found[0]}"
            tried.append(f"no account with website domain {domain}")
        key = company_key(self.lead.company)
        if key:
            found = self.directory.accounts_by_name(self.lead.company)
            if found:
                return found, f"account by company name '{key}'"
            tried.append(f"no account named '{key}'")
        else:
            tried.append("no company name")
        return (), "; ".join(tried)

    def no(self, rule: RoutingRule, why: str, candidates: tuple[Candidate, ...] = ()) -> _Outcome:
        return _Outcome(RuleTried(rule.name, rule.kind, False, why, candidates))

"""A stored rulebook version back as a Rulebook, so a score is explained by the rules that made it."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from domain.activity import ActivityType
from domain.rules import (
    DecayPolicy,
    Disqualifier,
    FitModel,
    FitRule,
    FunnelStage,
    QualificationPolicy,
    Repeat,
    RepeatKind,
    Rulebook,
    ScoringRule,
)


def _decimal(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def rulebook_from_plain(data: dict[str, Any]) -> Rulebook:
    """The inverse of the JSON a version stores (domain.rules._plain of the Rulebook)."""
    rules = tuple(
        ScoringRule(action=r["action"], type=ActivityType(r["type"]), asset=r["asset"], stage=FunnelStage(r["stage"]),
                    readiness_pct=Decimal(r["readiness_pct"]), points=r["points"], cap=r["cap"],
                    repeat=Repeat(RepeatKind(r["repeat"]["kind"]), r["repeat"]["per_day"]))
        for r in data["rules"]
    )
    d = data["decay"]
    decay = DecayPolicy(half_life_days=_decimal(d["half_life_days"]),
                        steps=tuple((days, Decimal(pct)) for days, pct in d["steps"]), floor=d["floor"])
    f = data["fit"]
    fit = FitModel(
        rules=tuple(FitRule(field=r["field"], values=tuple(tuple(v) for v in r["values"]),
                            ranges=tuple(tuple(v) for v in r["ranges"]),
                            keywords=tuple((tuple(words), points) for words, points in r["keywords"]))
                    for r in f["rules"]),
        grade_thresholds=tuple(tuple(g) for g in f["grade_thresholds"]),
        disqualifiers=tuple(Disqualifier(reason=q["reason"], effect=q["effect"], email_domains=tuple(q["email_domains"]),
                                         field=q["field"], values=tuple(q["values"]), max_grade=q["max_grade"])
                            for q in f["disqualifiers"]),
    )
    q = data["qualification"]
    qualification = QualificationPolicy(
        min_fit_grade=q["min_fit_grade"], hand_raisers=frozenset(ActivityType(k) for k in q["hand_raisers"]),
        hand_raise_min_fit_grade=q["hand_raise_min_fit_grade"], rearm_below=q["rearm_below"],
        cold_engaged_at=q["cold_engaged_at"], cold_below=q["cold_below"], details_fields=tuple(q["details_fields"]),
    )
    return Rulebook(readiness_threshold=data["readiness_threshold"], rules=rules, decay=decay, fit=fit,
                    qualification=qualification)

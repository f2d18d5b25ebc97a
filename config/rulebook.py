"""Loading the rulebook (scoring.csv + scoring.yaml) with errors that name the file, the line and the problem."""

from __future__ import annotations

import csv
import re
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from config.loading import ConfigError, read_yaml, where
from domain.activity import PERSON_FIELDS, ActivityType
from domain.rules import (
    GRADES,
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
    to_centipoints,
)

CSV_COLUMNS = ("action", "stage", "readiness_pct")
OPTIONAL_COLUMNS = ("cap", "repeat")
_PER_DAY = re.compile(r"^(\d+)\s*/\s*day$", re.IGNORECASE)
FIT_FIELDS = tuple(name for name in PERSON_FIELDS if name not in ("first_name", "last_name"))


def _decimal(value: Any, place: str, what: str) -> Decimal:
    try:
        number = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        raise ConfigError(f"{place}: {what} must be a number, not {value!r}") from None
    if not number.is_finite():
        raise ConfigError(f"{place}: {what} must be a finite number")
    return number


def _repeat(text: str, place: str) -> Repeat:
    text = (text or "").strip().lower()
    if text in ("", "every", "every time"):
        return Repeat(RepeatKind.EVERY)
    if text in ("first", "first time", "once", "first time only"):
        return Repeat(RepeatKind.FIRST)
    match = _PER_DAY.match(text)
    if match and int(match.group(1)) >= 1:
        return Repeat(RepeatKind.DAILY, int(match.group(1)))
    raise ConfigError(f"{place}: repeat must be 'first', 'every' or 'N/day' (N >= 1), not {text!r}")


def load_scoring_csv(path: Path, threshold: Decimal) -> tuple[ScoringRule, ...]:
    try:
        handle = path.open(newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    with handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        names = [h.strip().lower() for h in header or []]
        if tuple(names[:3]) != CSV_COLUMNS or any(n not in OPTIONAL_COLUMNS for n in names[3:]):
            raise ConfigError(f"{path}:1: the header must be {','.join(CSV_COLUMNS)} (optionally then cap, repeat), "
                              f"not {','.join(names) or 'empty'}")
        rules: list[ScoringRule] = []
        seen: dict[str, int] = {}
        for row in reader:
            line = reader.line_num
            if not any(cell.strip() for cell in row) or row[0].lstrip().startswith("#"):
                continue
            place = f"{path}:{line}"
            if len(row) > len(names):
                raise ConfigError(f"{place}: {len(row)} columns, the header has {len(names)}")
            cells = dict(zip(names, (cell.strip() for cell in row)))
            rules.append(_rule(cells, place, line, threshold))
            key = rules[-1].action.lower()
            if key in seen:
                raise ConfigError(f"{place}: action {rules[-1].action!r} is already scored on line {seen[key]}")
            seen[key] = line
    if not rules:
        raise ConfigError(f"{path}: no scoring rules")
    return tuple(rules)


def _rule(cells: dict[str, str], place: str, line: int, threshold: Decimal) -> ScoringRule:
    action = cells.get("action", "")
    kind_text, _, asset = action.partition(":")
    try:
        kind = ActivityType(kind_text.strip())
    except ValueError:
        known = ", ".join(t.value for t in ActivityType)
        raise ConfigError(f"{place}: unknown activity type {kind_text.strip()!r} (known: {known})") from None
    asset = asset.strip() or None
    if ":" in action and asset is None:
        raise ConfigError(f"{place}: {action!r} names no asset after ':'")
    try:
        stage = FunnelStage(cells.get("stage", "").lower())
    except ValueError:
        raise ConfigError(f"{place}: stage must be awareness, consideration or decision, not {cells.get('stage')!r}") from None
    pct = _decimal(cells.get("readiness_pct", ""), place, "readiness_pct")
    if not Decimal(-100) <= pct <= Decimal(100):
        raise ConfigError(f"{place}: readiness_pct must be between -100 and 100, not {pct}")
    if pct == 0:
        raise ConfigError(f"{place}: readiness_pct 0 earns nothing; remove the row instead")
    points = to_centipoints(pct * threshold / 100)
    cap = None
    if cells.get("cap"):
        cap_points = _decimal(cells["cap"], place, "cap")
        if cap_points <= 0:
            raise ConfigError(f"{place}: cap must be positive (it bounds the size of the points either way)")
        cap = to_centipoints(cap_points)
    return ScoringRule(
        action=action.strip(), type=kind, asset=asset, stage=stage, readiness_pct=pct, points=points, cap=cap,
        repeat=_repeat(cells.get("repeat", ""), place), line=line,
    )


def _mapping(value: Any, place: str, what: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{place}: {what} must be a mapping")
    return value


def _grade(value: Any, place: str, what: str) -> str:
    grade = str(value).strip().upper()
    if grade not in GRADES:
        raise ConfigError(f"{place}: {what} must be one of {', '.join(GRADES)}, not {value!r}")
    return grade


def _points(value: Any, place: str, what: str) -> int:
    return to_centipoints(_decimal(value, place, what))


def _decay(node: Any, path: Path) -> DecayPolicy:
    node = _mapping(node, where(path, node), "decay")
    place = where(path, node)
    floor = _points(node.get("floor", 0), place, "decay.floor")
    half_life, steps = node.get("half_life_days"), node.get("steps")
    if half_life is not None and steps is not None:
        raise ConfigError(f"{place}: decay takes half_life_days or steps, not both")
    if half_life is not None:
        days = _decimal(half_life, place, "half_life_days")
        if days <= 0:
            raise ConfigError(f"{place}: half_life_days must be positive")
        return DecayPolicy(half_life_days=days, floor=floor)
    parsed: list[tuple[int, Decimal]] = []
    for step in steps or []:
        step_place = where(path, step)
        if not isinstance(step, dict) or set(step) != {"after_days", "keep_pct"}:
            raise ConfigError(f"{step_place}: a decay step is {{after_days: N, keep_pct: P}}")
        after = int(_decimal(step["after_days"], step_place, "after_days"))
        keep = _decimal(step["keep_pct"], step_place, "keep_pct")
        if after < 1 or not Decimal(0) <= keep <= Decimal(100):
            raise ConfigError(f"{step_place}: after_days must be >= 1 and keep_pct between 0 and 100")
        if parsed and (after <= parsed[-1][0] or keep > parsed[-1][1]):
            raise ConfigError(f"{step_place}: steps must grow older and keep no more than the step before")
        parsed.append((after, keep))
    return DecayPolicy(steps=tuple(parsed), floor=floor)


def _fit(node: Any, path: Path) -> FitModel:
    node = _mapping(node, where(path, node), "fit")
    place = where(path, node)
    rules: list[FitRule] = []
    for field, spec in _mapping(node.get("rules"), place, "fit.rules").items():
        rule_place = where(path, spec) if isinstance(spec, dict) else place
        if field not in FIT_FIELDS:
            raise ConfigError(f"{rule_place}: fit rules score lead fields ({', '.join(FIT_FIELDS)}), not {field!r}")
        spec = _mapping(spec, rule_place, f"fit.rules.{field}")
        unknown = set(spec) - {"values", "ranges", "keywords"}
        if unknown or not spec:
            raise ConfigError(f"{rule_place}: fit.rules.{field} takes values, ranges or keywords")
        values = tuple((str(k), _points(v, rule_place, f"{field} value {k!r}")) for k, v in _mapping(spec.get("values"), rule_place, "values").items())
        ranges = []
        for item in spec.get("ranges") or []:
            item_place = where(path, item)
            if not isinstance(item, dict) or "points" not in item or not ({"min", "max"} & set(item)):
                raise ConfigError(f"{item_place}: a range is {{min: N, max: M, points: P}} (min or max may be left out)")
            low = None if item.get("min") is None else int(_decimal(item["min"], item_place, "min"))
            high = None if item.get("max") is None else int(_decimal(item["max"], item_place, "max"))
            if low is not None and high is not None and low > high:
                raise ConfigError(f"{item_place}: min {low} is above max {high}")
            ranges.append((low, high, _points(item["points"], item_place, "points")))
        keywords = []
        for item in spec.get("keywords") or []:
            item_place = where(path, item)
            if not isinstance(item, dict) or not isinstance(item.get("words"), list) or "points" not in item:
                raise ConfigError(f"{item_place}: keywords are {{words: [..], points: P}}")
            keywords.append((tuple(str(w) for w in item["words"]), _points(item["points"], item_place, "points")))
        rules.append(FitRule(field=field, values=values, ranges=tuple(ranges), keywords=tuple(keywords), line=spec.line if hasattr(spec, "line") else None))
    grades_node = _mapping(node.get("grades"), place, "fit.grades") or {"A": 70, "B": 45, "C": 20}
    if set(grades_node) != {"A", "B", "C"}:
        raise ConfigError(f"{where(path, grades_node)}: fit.grades gives the least points for A, B and C")
    thresholds = tuple((g, _points(grades_node[g], place, f"grade {g}")) for g in ("A", "B", "C"))
    if not thresholds[0][1] >= thresholds[1][1] >= thresholds[2][1]:
        raise ConfigError(f"{where(path, grades_node)}: grade thresholds must not rise from A to C")
    disqualifiers = []
    for item in node.get("disqualifiers") or []:
        item_place = where(path, item)
        if not isinstance(item, dict) or not item.get("reason") or item.get("effect") not in ("disqualify", "max_grade"):
            raise ConfigError(f"{item_place}: a disqualifier has a reason and effect 'disqualify' or 'max_grade'")
        domains = tuple(str(d).lower().lstrip("@") for d in item.get("email_domains") or [])
        field, values = item.get("field"), tuple(str(v) for v in item.get("values") or [])
        if not domains and not (field and values):
            raise ConfigError(f"{item_place}: a disqualifier matches email_domains, or a field and its values")
        if field is not None and field not in FIT_FIELDS:
            raise ConfigError(f"{item_place}: unknown lead field {field!r}")
        cap = _grade(item.get("max_grade"), item_place, "max_grade") if item["effect"] == "max_grade" else None
        disqualifiers.append(Disqualifier(reason=str(item["reason"]), effect=item["effect"], email_domains=domains,
                                          field=field, values=values, max_grade=cap, line=getattr(item, "line", None)))
    return FitModel(rules=tuple(rules), grade_thresholds=thresholds, disqualifiers=tuple(disqualifiers))


def _qualification(node: Any, path: Path) -> QualificationPolicy:
    node = _mapping(node, where(path, node), "qualification")
    place = where(path, node)
    defaults = QualificationPolicy()
    raisers = node.get("hand_raisers")
    if raisers is None:
        hand_raisers = defaults.hand_raisers
    else:
        try:
            hand_raisers = frozenset(ActivityType(r) for r in raisers)
        except ValueError as exc:
            raise ConfigError(f"{place}: hand_raisers: {exc}") from None
    cold = _mapping(node.get("cold"), place, "qualification.cold")
    details = tuple(node.get("details_fields") or defaults.details_fields)
    unknown = [f for f in details if f not in PERSON_FIELDS]
    if unknown:
        raise ConfigError(f"{place}: details_fields names unknown lead fields {unknown}")
    return QualificationPolicy(
        min_fit_grade=_grade(node.get("mql_min_fit_grade", defaults.min_fit_grade), place, "mql_min_fit_grade"),
        hand_raisers=hand_raisers,
        hand_raise_min_fit_grade=_grade(node.get("hand_raise_min_fit_grade", defaults.hand_raise_min_fit_grade), place,
                                        "hand_raise_min_fit_grade"),
        rearm_below=_points(node.get("rearm_below", defaults.rearm_below / 100), place, "rearm_below"),
        cold_engaged_at=_points(cold.get("engaged_at", defaults.cold_engaged_at / 100), place, "cold.engaged_at"),
        cold_below=_points(cold.get("below", defaults.cold_below / 100), place, "cold.below"),
        details_fields=details,
    )


def load_rulebook(directory: Path) -> Rulebook:
    """scoring.yaml and scoring.csv from `directory`, validated into one Rulebook."""
    yaml_path, csv_path = directory / "scoring.yaml", directory / "scoring.csv"
    document = read_yaml(yaml_path)
    if not isinstance(document, dict):
        raise ConfigError(f"{yaml_path}: expected a mapping")
    known = {"readiness_threshold", "decay", "fit", "qualification"}
    unknown = set(document) - known
    if unknown:
        raise ConfigError(f"{where(yaml_path, document)}: unknown settings {sorted(unknown)} (known: {sorted(known)})")
    threshold = _decimal(document.get("readiness_threshold", 100), str(yaml_path), "readiness_threshold")
    if threshold <= 0:
        raise ConfigError(f"{yaml_path}: readiness_threshold must be positive")
    qualification = _qualification(document.get("qualification"), yaml_path)
    if qualification.rearm_below > to_centipoints(threshold):
        raise ConfigError(f"{yaml_path}: qualification.rearm_below must not be above the readiness threshold")
    return Rulebook(
        readiness_threshold=to_centipoints(threshold),
        rules=load_scoring_csv(csv_path, threshold),
        decay=_decay(document.get("decay"), yaml_path),
        fit=_fit(document.get("fit"), yaml_path),
        qualification=qualification,
    )

"""Loading the rulebook (scoring.csv + scoring.yaml) with errors that name the file, the line and the problem."""

from __future__ import annotations

import csv
import io
import re
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Mapping

import yaml

from config.loading import ConfigError, LineDict, _LineLoader, line_of_byte, read_yaml, where
from domain.activity import PERSON_FIELDS, ActivityType, asset_key
from domain.rules import (
    DECAY_TABLE_DAYS,
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
    points_text,
    to_centipoints,
)

CSV_COLUMNS = ("action", "stage", "readiness_pct")
OPTIONAL_COLUMNS = ("cap", "repeat")
_PER_DAY = re.compile(r"^(\d+)\s*/\s*day$", re.IGNORECASE)
FIT_FIELDS = tuple(name for name in PERSON_FIELDS if name not in ("first_name", "last_name"))

# Points are stored as centipoints in 32-bit INTEGER columns on PostgreSQL (a rule's points and cap, a lead's
# score and peak, its fit points): each holds at most SCORE_ROOM. The limits below keep every one of them in it.
SCORE_ROOM = 2**31 - 1
MOST_POINTS = Decimal(100_000)  # any one amount of points: a thousand times the shipped readiness threshold
MOST_PER_DAY = 1_000  # a daily limit above this limits nothing a person does: that rule is 'every'
LEAD_ACTIVITIES = 100_000  # how often one lead is taken to earn a rule that has no cap, at most
MOST_COUNT = 2**31 - 1  # a range's ends, for the numbers of a lead (company_size) they are compared with


class _KeyLineLoader(_LineLoader):
    """Also remembers the line of every key, so an error points at the setting itself, not at its section."""


def _construct_keyed_mapping(loader: _KeyLineLoader, node: yaml.MappingNode) -> LineDict:
    mapping = LineDict(loader.construct_mapping(node, deep=True), line=node.start_mark.line + 1)
    mapping.key_lines = {loader.construct_object(key, deep=True): key.start_mark.line + 1 for key, _ in node.value}
    return mapping


_KeyLineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_keyed_mapping)


def _at(path: Path, node: Any, key: Any) -> str:
    """`file:line` of a key of a YAML mapping (of the mapping when the key is absent)."""
    line = getattr(node, "key_lines", {}).get(key) or getattr(node, "line", None)
    return f"{path}:{line}" if line else str(path)


def _known(node: dict, keys: tuple[str, ...], path: Path, what: str) -> None:
    for key in node:
        if key not in keys:
            raise ConfigError(f"{_at(path, node, key)}: unknown setting {key!r} in {what} (known: {', '.join(keys)})")


def _list(node: Any, key: str, path: Path, what: str) -> list:
    value = node.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise ConfigError(f"{_at(path, node, key)}: {what} must be a list, not {value!r}")
    return value


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
    per_day = int(match.group(1)) if match and len(match.group(1).lstrip("0")) <= 9 else MOST_PER_DAY + 1
    if match and 1 <= per_day <= MOST_PER_DAY:
        return Repeat(RepeatKind.DAILY, per_day)
    if match and per_day > MOST_PER_DAY:
        raise ConfigError(f"{place}: repeat allows at most {MOST_PER_DAY:,}/day, not {text!r} "
                          "(for no daily limit, write 'every')")
    raise ConfigError(f"{place}: repeat must be 'first', 'every' or 'N/day' (N >= 1), not {text!r}")


def load_scoring_csv(path: Path, threshold: Decimal, data: bytes | None = None) -> tuple[ScoringRule, ...]:
    """The scoring rules of the sheet at `path`; with `data`, that is the sheet, and `path` only names it."""
    try:
        if data is None:
            data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}:{line_of_byte(data, exc.start)}: not UTF-8 text (save the sheet as CSV UTF-8)") from None
    with io.StringIO(text, newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        names = [h.strip().lower() for h in header or []]
        if tuple(names[:3]) != CSV_COLUMNS or any(n not in OPTIONAL_COLUMNS for n in names[3:]):
            raise ConfigError(f"{path}:1: the header must be {','.join(CSV_COLUMNS)} (optionally then cap, repeat), "
                              f"not {','.join(names) or 'empty'}")
        rules: list[ScoringRule] = []
        seen: dict[tuple[str, str | None], int] = {}
        for row in reader:
            line = reader.line_num
            if not any(cell.strip() for cell in row) or row[0].lstrip().startswith("#"):
                continue
            place = f"{path}:{line}"
            if len(row) > len(names):
                raise ConfigError(f"{place}: {len(row)} columns, the header has {len(names)}")
            cells = dict(zip(names, (cell.strip() for cell in row)))
            rules.append(_rule(cells, place, line, threshold))
            # What a rule matches, not how it is spelled: "type:Asset" and "type: asset" are the same rule.
            key = (rules[-1].type.value, asset_key(rules[-1].asset))
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
        cap = _points(cap_points, place, "cap")
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


def _section(parent: dict, key: str, path: Path, what: str) -> dict:
    return _mapping(parent.get(key), _at(path, parent, key), what)


def _text(value: Any, place: str) -> str:
    """A value to match lead data against. YAML reads NO (Norway), yes, on and off as booleans: refuse them."""
    if isinstance(value, bool):
        raise ConfigError(f"{place}: {value!r} was read as a yes/no value; put it in quotes (e.g. 'NO' for Norway)")
    return str(value)


def _grade(value: Any, place: str, what: str) -> str:
    grade = str(value).strip().upper()
    if grade not in GRADES:
        raise ConfigError(f"{place}: {what} must be one of {', '.join(GRADES)}, not {value!r}")
    return grade


def _points(value: Any, place: str, what: str) -> int:
    """An amount of points in centipoints, refused beyond MOST_POINTS either way."""
    number = _decimal(value, place, what)
    if abs(number) > MOST_POINTS:
        bound = f"at most {MOST_POINTS:,}" if number > 0 else f"at least -{MOST_POINTS:,}"
        raise ConfigError(f"{place}: {what} must be {bound} points, not {number}")
    return to_centipoints(number)


def _count(value: Any, place: str, what: str) -> int:
    number = _decimal(value, place, what)
    if abs(number) > MOST_COUNT:
        raise ConfigError(f"{place}: {what} must be between -{MOST_COUNT:,} and {MOST_COUNT:,}, not {number}")
    return int(number)


def _score_room(rules: tuple[ScoringRule, ...], path: Path) -> None:
    """Refuse a sheet whose rules could add up to more than a lead's score can hold: every capped or first-time
    rule earned in full, and the richest rule without a cap earned LEAD_ACTIVITIES times."""
    def endless(rule: ScoringRule) -> bool:
        return rule.cap is None and rule.repeat.kind is not RepeatKind.FIRST

    earning = [rule for rule in rules if rule.points > 0]
    richest = max(filter(endless, earning), key=lambda rule: rule.points, default=None)
    reach = richest.points * LEAD_ACTIVITIES if richest else 0
    room = f"{SCORE_ROOM // 100:,} points"
    if reach > SCORE_ROOM:
        raise ConfigError(f"{path}:{richest.line}: {richest.action!r} earns {points_text(richest.points)} points each "
                          f"time without a cap: {LEAD_ACTIVITIES:,} of them would be more than a score can hold "
                          f"({room}); give it a cap")
    for rule in earning:
        if endless(rule):
            continue
        reach += min(rule.points, rule.cap or rule.points) if rule.repeat.kind is RepeatKind.FIRST else rule.cap
        if reach > SCORE_ROOM:
            raise ConfigError(f"{path}:{rule.line}: with this rule a lead could score {reach // 100:,} points, "
                              f"more than a score can hold ({room}); lower the caps")


def _decay(document: dict, path: Path, threshold: int) -> DecayPolicy:
    node = _section(document, "decay", path, "decay")
    _known(node, ("half_life_days", "steps", "floor"), path, "decay")
    floor = _points(node.get("floor", 0), _at(path, node, "floor"), "decay.floor")
    if not 0 <= floor < threshold:
        # a floor at the threshold would make every good-fit lead an MQL on nothing at all
        raise ConfigError(f"{_at(path, node, 'floor')}: decay.floor must be at least 0 and below the readiness threshold")
    half_life, steps = node.get("half_life_days"), node.get("steps")
    if half_life is not None and steps is not None:
        raise ConfigError(f"{_at(path, node, 'steps')}: decay takes half_life_days or steps, not both")
    if half_life is not None:
        place = _at(path, node, "half_life_days")
        days = _decimal(half_life, place, "half_life_days")
        if days <= 0:
            raise ConfigError(f"{place}: half_life_days must be positive")
        if days < Decimal("0.01"):  # shorter, and a day's share is too small a number to work out
            raise ConfigError(f"{place}: half_life_days must be at least 0.01")
        return DecayPolicy(half_life_days=days, floor=floor)
    parsed: list[tuple[int, Decimal]] = []
    for step in _list(node, "steps", path, "decay.steps"):
        step_place = where(path, step) if isinstance(step, dict) else _at(path, node, "steps")
        if not isinstance(step, dict) or set(step) != {"after_days", "keep_pct"}:
            raise ConfigError(f"{step_place}: a decay step is {{after_days: N, keep_pct: P}}")
        after_days = _decimal(step["after_days"], step_place, "after_days")
        keep = _decimal(step["keep_pct"], step_place, "keep_pct")
        if after_days < 1 or not Decimal(0) <= keep <= Decimal(100):
            raise ConfigError(f"{step_place}: after_days must be >= 1 and keep_pct between 0 and 100")
        if after_days > DECAY_TABLE_DAYS:
            raise ConfigError(f"{step_place}: after_days must be at most {DECAY_TABLE_DAYS} (ages are counted up "
                              "to ten years)")
        after = int(after_days)
        if parsed and (after <= parsed[-1][0] or keep > parsed[-1][1]):
            raise ConfigError(f"{step_place}: steps must grow older and keep no more than the step before")
        parsed.append((after, keep))
    return DecayPolicy(steps=tuple(parsed), floor=floor)


def _fit(document: dict, path: Path) -> FitModel:
    node = _section(document, "fit", path, "fit")
    _known(node, ("rules", "grades", "disqualifiers"), path, "fit")
    rules_node = _section(node, "rules", path, "fit.rules")
    rules: list[FitRule] = []
    for field, spec in rules_node.items():
        rule_place = _at(path, rules_node, field)
        if field not in FIT_FIELDS:
            raise ConfigError(f"{rule_place}: fit rules score lead fields ({', '.join(FIT_FIELDS)}), not {field!r}")
        spec = _mapping(spec, rule_place, f"fit.rules.{field}")
        if not spec:
            raise ConfigError(f"{rule_place}: fit.rules.{field} takes values, ranges or keywords")
        _known(spec, ("values", "ranges", "keywords"), path, f"fit.rules.{field}")
        values_node = _section(spec, "values", path, "values")
        values = tuple((_text(k, _at(path, values_node, k)), _points(v, _at(path, values_node, k), f"{field} value {k!r}"))
                       for k, v in values_node.items())
        ranges = []
        for item in _list(spec, "ranges", path, f"fit.rules.{field}.ranges"):
            item_place = where(path, item) if isinstance(item, dict) else _at(path, spec, "ranges")
            if not isinstance(item, dict) or "points" not in item or not ({"min", "max"} & set(item)) \
                    or set(item) - {"min", "max", "points"}:
                raise ConfigError(f"{item_place}: a range is {{min: N, max: M, points: P}} (min or max may be left out)")
            low = None if item.get("min") is None else _count(item["min"], item_place, "min")
            high = None if item.get("max") is None else _count(item["max"], item_place, "max")
            if low is not None and high is not None and low > high:
                raise ConfigError(f"{item_place}: min {low} is above max {high}")
            ranges.append((low, high, _points(item["points"], item_place, "points")))
        keywords = []
        for item in _list(spec, "keywords", path, f"fit.rules.{field}.keywords"):
            item_place = where(path, item) if isinstance(item, dict) else _at(path, spec, "keywords")
            if not isinstance(item, dict) or not isinstance(item.get("words"), list) or "points" not in item \
                    or set(item) - {"words", "points"}:
                raise ConfigError(f"{item_place}: keywords are {{words: [..], points: P}}")
            words = tuple(_text(w, item_place) for w in item["words"])
            keywords.append((words, _points(item["points"], item_place, "points")))
        rules.append(FitRule(field=field, values=values, ranges=tuple(ranges), keywords=tuple(keywords),
                             line=getattr(spec, "line", None)))
    grades_node = _section(node, "grades", path, "fit.grades") or {"A": 70, "B": 45, "C": 20}
    if set(grades_node) != {"A", "B", "C"}:
        raise ConfigError(f"{_at(path, node, 'grades')}: fit.grades gives the least points for A, B and C")
    thresholds = tuple((g, _points(grades_node[g], _at(path, grades_node, g), f"grade {g}")) for g in ("A", "B", "C"))
    if not thresholds[0][1] >= thresholds[1][1] >= thresholds[2][1]:
        raise ConfigError(f"{_at(path, node, 'grades')}: grade thresholds must not rise from A to C")
    disqualifiers = []
    for item in _list(node, "disqualifiers", path, "fit.disqualifiers"):
        item_place = where(path, item) if isinstance(item, dict) else _at(path, node, "disqualifiers")
        if not isinstance(item, dict) or not item.get("reason") or item.get("effect") not in ("disqualify", "max_grade"):
            raise ConfigError(f"{item_place}: a disqualifier has a reason and effect 'disqualify' or 'max_grade'")
        _known(item, ("reason", "effect", "email_domains", "field", "values", "max_grade"), path, "a disqualifier")
        domains = tuple(_text(d, item_place).lower().lstrip("@")
                        for d in _list(item, "email_domains", path, "email_domains"))
        field, values = item.get("field"), tuple(_text(v, item_place) for v in _list(item, "values", path, "values"))
        if not domains and not (field and values):
            raise ConfigError(f"{item_place}: a disqualifier matches email_domains, or a field and its values")
        if field is not None and field not in FIT_FIELDS:
            raise ConfigError(f"{_at(path, item, 'field')}: unknown lead field {field!r}")
        cap = _grade(item.get("max_grade"), _at(path, item, "max_grade"), "max_grade") if item["effect"] == "max_grade" else None
        disqualifiers.append(Disqualifier(reason=str(item["reason"]), effect=item["effect"], email_domains=domains,
                                          field=field, values=values, max_grade=cap, line=getattr(item, "line", None)))
    return FitModel(rules=tuple(rules), grade_thresholds=thresholds, disqualifiers=tuple(disqualifiers))


_QUALIFICATION_KEYS = ("mql_min_fit_grade", "hand_raisers", "hand_raise_min_fit_grade", "rearm_below", "cold",
                       "details_fields")


def _qualification(document: dict, path: Path, threshold: int) -> QualificationPolicy:
    node = _section(document, "qualification", path, "qualification")
    _known(node, _QUALIFICATION_KEYS, path, "qualification")
    defaults = QualificationPolicy()
    if node.get("hand_raisers") is None:
        hand_raisers = defaults.hand_raisers
    else:
        try:
            hand_raisers = frozenset(ActivityType(r) for r in _list(node, "hand_raisers", path, "hand_raisers"))
        except ValueError as exc:
            raise ConfigError(f"{_at(path, node, 'hand_raisers')}: hand_raisers: {exc}") from None
    cold = _section(node, "cold", path, "qualification.cold")
    _known(cold, ("engaged_at", "below"), path, "qualification.cold")
    details = tuple(_list(node, "details_fields", path, "details_fields") or defaults.details_fields)
    unknown = [f for f in details if f not in PERSON_FIELDS]
    if unknown:
        raise ConfigError(f"{_at(path, node, 'details_fields')}: details_fields names unknown lead fields {unknown}")
    rearm_place = _at(path, node, "rearm_below")
    rearm_below = _points(node.get("rearm_below", defaults.rearm_below / 100), rearm_place, "rearm_below")
    if rearm_below > threshold:
        raise ConfigError(f"{rearm_place}: qualification.rearm_below must not be above the readiness threshold")
    return QualificationPolicy(
        min_fit_grade=_grade(node.get("mql_min_fit_grade", defaults.min_fit_grade), _at(path, node, "mql_min_fit_grade"),
                             "mql_min_fit_grade"),
        hand_raisers=hand_raisers,
        hand_raise_min_fit_grade=_grade(node.get("hand_raise_min_fit_grade", defaults.hand_raise_min_fit_grade),
                                        _at(path, node, "hand_raise_min_fit_grade"), "hand_raise_min_fit_grade"),
        rearm_below=rearm_below,
        cold_engaged_at=_points(cold.get("engaged_at", defaults.cold_engaged_at / 100), _at(path, cold, "engaged_at"),
                                "cold.engaged_at"),
        cold_below=_points(cold.get("below", defaults.cold_below / 100), _at(path, cold, "below"), "cold.below"),
        details_fields=details,
    )


RULEBOOK_FILES = ("scoring.yaml", "scoring.csv")


def load_rulebook(directory: Path, pasted: Mapping[str, str] | None = None) -> Rulebook:
    """scoring.yaml and scoring.csv from `directory`, validated into one Rulebook. `pasted` gives either file's
    text instead (by file name: a draft pasted where no file can be put); errors name it 'pasted scoring.csv'."""
    pasted = {name: text for name, text in (pasted or {}).items() if text is not None}
    unknown = sorted(pasted.keys() - set(RULEBOOK_FILES))
    if unknown:
        raise ConfigError(f"a rulebook has no file {', '.join(unknown)} (its files: {', '.join(RULEBOOK_FILES)})")
    yaml_path, csv_path = (Path(f"pasted {name}") if name in pasted else directory / name for name in RULEBOOK_FILES)
    document = read_yaml(yaml_path, _KeyLineLoader, pasted.get("scoring.yaml"))
    if not isinstance(document, dict):
        raise ConfigError(f"{yaml_path}: expected a mapping")
    _known(document, ("readiness_threshold", "decay", "fit", "qualification"), yaml_path, "the rulebook")
    place = _at(yaml_path, document, "readiness_threshold")
    threshold = _decimal(document.get("readiness_threshold", 100), place, "readiness_threshold")
    if threshold <= 0:
        raise ConfigError(f"{place}: readiness_threshold must be positive")
    if threshold > MOST_POINTS:
        raise ConfigError(f"{place}: readiness_threshold must be at most {MOST_POINTS:,} points, not {threshold}")
    rules = load_scoring_csv(csv_path, threshold,
                             pasted["scoring.csv"].encode("utf-8") if "scoring.csv" in pasted else None)
    _score_room(rules, csv_path)
    return Rulebook(
        readiness_threshold=to_centipoints(threshold),
        rules=rules,
        decay=_decay(document, yaml_path, to_centipoints(threshold)),
        fit=_fit(document, yaml_path),
        qualification=_qualification(document, yaml_path, to_centipoints(threshold)),
    )

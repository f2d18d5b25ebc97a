"""The rulebook files: the shipped model loads, every mistake a marketer can make is refused with the file, the
line and the problem, and the version digest changes with the rules and only with them."""

from __future__ import annotations

import shutil
from decimal import Decimal
from pathlib import Path

import pytest

from config.loading import ConfigError
from config.rulebook import load_rulebook
from config.settings import CONFIG_DIR
from domain.activity import ActivityType
from domain.rules import RepeatKind


def copy(tmp_path: Path) -> Path:
    target = tmp_path / "rules"
    target.mkdir()
    for name in ("scoring.yaml", "scoring.csv"):
        shutil.copy(CONFIG_DIR / name, target / name)
    return target


def edit(directory: Path, name: str, old: str, new: str) -> Path:
    path = directory / name
    text = path.read_text()
    assert old in text, f"{old!r} is not in the shipped {name}"
    path.write_text(text.replace(old, new, 1))
    return path


def line_of(path: Path, fragment: str) -> int:
    [line] = [n for n, text in enumerate(path.read_text().splitlines(), 1) if fragment in text]
    return line


def refusal(directory: Path) -> str:
    with pytest.raises(ConfigError) as error:
        load_rulebook(directory)
    return str(error.value)


# ------------------------------------------------------------------------------------------ the shipped model

def test_the_shipped_rulebook_loads():
    rulebook = load_rulebook(CONFIG_DIR)
    assert rulebook.readiness_threshold == 10000
    assert len(rulebook.rules) == 17
    assert rulebook.rule_for("whitepaper_download", None).points == 3000
    assert rulebook.rule_for("unsubscribe", None).points == -5000
    assert rulebook.rule_for("email_open", None).repeat.kind is RepeatKind.DAILY
    assert rulebook.rule_for("demo_request", None).repeat.kind is RepeatKind.FIRST
    assert rulebook.decay.half_life_days == Decimal(30) and rulebook.decay.floor == 0
    assert rulebook.fit.grade_thresholds == (("A", 7000), ("B", 4500), ("C", 2000))
    assert [d.effect for d in rulebook.fit.disqualifiers] == ["disqualify", "max_grade"]
    q = rulebook.qualification
    assert (q.min_fit_grade, q.hand_raise_min_fit_grade, q.rearm_below, q.cold_engaged_at, q.cold_below) == \
        ("B", "C", 7000, 2000, 500)
    assert q.hand_raisers == {ActivityType.DEMO_REQUEST, ActivityType.TRIAL_SIGNUP, ActivityType.CONTACT_SALES}


def test_each_rule_remembers_its_line_in_the_sheet():
    rulebook = load_rulebook(CONFIG_DIR)
    path = CONFIG_DIR / "scoring.csv"
    for rule in rulebook.rules:
        assert rule.line == line_of(path, rule.action + ",")


def test_only_the_three_spreadsheet_columns_are_required(tmp_path):
    rules = copy(tmp_path)
    (rules / "scoring.csv").write_text("action,stage,readiness_pct\nwhitepaper_download,consideration,30\n")
    [rule] = load_rulebook(rules).rules
    assert (rule.points, rule.cap, rule.repeat.kind) == (3000, None, RepeatKind.EVERY)


def test_blank_lines_and_comment_rows_are_skipped_and_a_bom_is_ignored(tmp_path):
    rules = copy(tmp_path)
    (rules / "scoring.csv").write_bytes(
        "\ufeffaction,stage,readiness_pct,cap,repeat\n\n# content\nwhitepaper_download,consideration,30,60,every\n,,,,\n"
        .encode("utf-8"))
    [rule] = load_rulebook(rules).rules
    assert rule.line == 4


@pytest.mark.parametrize("text, kind, per_day", [
    ("first", RepeatKind.FIRST, None), ("First time only", RepeatKind.FIRST, None), ("once", RepeatKind.FIRST, None),
    ("every", RepeatKind.EVERY, None), ("every time", RepeatKind.EVERY, None), ("", RepeatKind.EVERY, None),
    ("3/day", RepeatKind.DAILY, 3), ("2 / Day", RepeatKind.DAILY, 2),
])
def test_repeat_rules_are_written_as_people_say_them(tmp_path, text, kind, per_day):
    rules = copy(tmp_path)
    (rules / "scoring.csv").write_text(f"action,stage,readiness_pct,cap,repeat\nform_fill,consideration,10,,{text}\n")
    [rule] = load_rulebook(rules).rules
    assert (rule.repeat.kind, rule.repeat.per_day) == (kind, per_day)


def test_step_decay_loads(tmp_path):
    rules = copy(tmp_path)
    edit(rules, "scoring.yaml", "half_life_days: 30", "steps: [{after_days: 30, keep_pct: 50}, {after_days: 90, keep_pct: 0}]")
    decay = load_rulebook(rules).decay
    assert decay.half_life_days is None
    assert decay.steps == ((30, Decimal(50)), (90, Decimal(0)))


# ------------------------------------------------------------------------------------------ mistakes in the sheet

CSV_MISTAKES = [
    # (what is wrong, shipped text, replacement, a fragment of the offending line, a fragment of the message)
    ("bad header", "action,stage,readiness_pct,cap,repeat", "action,funnel,readiness_pct,cap,repeat", "action,funnel",
     "the header must be action,stage,readiness_pct"),
    ("unknown column", "action,stage,readiness_pct,cap,repeat", "action,stage,readiness_pct,cap,repeat,notes",
     "action,stage", "the header must be"),
    ("unknown activity type", "form_fill,consideration,10,20,every", "booth_visit,consideration,10,20,every",
     "booth_visit", "unknown activity type 'booth_visit'"),
    ("bad stage", "form_fill,consideration,10,20,every", "form_fill,interest,10,20,every", "form_fill,",
     "stage must be awareness, consideration or decision, not 'interest'"),
    ("pct above 100", "form_fill,consideration,10,20,every", "form_fill,consideration,110,20,every", "form_fill,",
     "readiness_pct must be between -100 and 100, not 110"),
    ("pct below -100", "unsubscribe,awareness,-50,,first", "unsubscribe,awareness,-150,,first", "unsubscribe,",
     "readiness_pct must be between -100 and 100, not -150"),
    ("pct not a number", "form_fill,consideration,10,20,every", "form_fill,consideration,ten,20,every", "form_fill,",
     "readiness_pct must be a number, not 'ten'"),
    ("pct zero", "form_fill,consideration,10,20,every", "form_fill,consideration,0,20,every", "form_fill,",
     "readiness_pct 0 earns nothing"),
    ("pct infinite", "form_fill,consideration,10,20,every", "form_fill,consideration,Infinity,20,every", "form_fill,",
     "readiness_pct must be a finite number"),
    ("bad repeat", "form_fill,consideration,10,20,every", "form_fill,consideration,10,20,twice", "form_fill,",
     "repeat must be 'first', 'every' or 'N/day' (N >= 1), not 'twice'"),
    ("zero per day", "email_open,awareness,1,10,1/day", "email_open,awareness,1,10,0/day", "email_open,",
     "not '0/day'"),
    ("duplicate action", "form_fill,consideration,10,20,every",
     "form_fill,consideration,10,20,every\nform_fill,decision,15,,first", "form_fill,decision",
     "action 'form_fill' is already scored on line"),
    ("duplicate asset spelled with a space", "page_view:/security,decision,5,10,1/day",
     "page_view:/security,decision,5,10,1/day\npage_view: /security,decision,5,10,1/day", "page_view: /security",
     "action 'page_view: /security' is already scored on line"),
    ("duplicate asset in other letters", "page_view:/security,decision,5,10,1/day",
     "page_view:/security,decision,5,10,1/day\npage_view:/SECURITY,decision,5,10,1/day", "page_view:/SECURITY",
     "action 'page_view:/SECURITY' is already scored on line"),
    ("zero cap", "form_fill,consideration,10,20,every", "form_fill,consideration,10,0,every", "form_fill,",
     "cap must be positive"),
    ("negative cap", "unsubscribe,awareness,-50,,first", "unsubscribe,awareness,-50,-60,first", "unsubscribe,",
     "cap must be positive"),
    ("cap not a number", "form_fill,consideration,10,20,every", "form_fill,consideration,10,lots,every", "form_fill,",
     "cap must be a number, not 'lots'"),
    ("too many cells", "form_fill,consideration,10,20,every", "form_fill,consideration,10,20,every,extra", "form_fill,",
     "6 columns, the header has 5"),
    ("no asset after the colon", "form_fill,consideration,10,20,every", "form_fill:,consideration,10,20,every",
     "form_fill:", "'form_fill:' names no asset after ':'"),
]


@pytest.mark.parametrize("problem, old, new, at, message", CSV_MISTAKES, ids=[m[0] for m in CSV_MISTAKES])
def test_a_mistake_in_the_sheet_is_refused_with_the_file_line_and_problem(tmp_path, problem, old, new, at, message):
    rules = copy(tmp_path)
    path = edit(rules, "scoring.csv", old, new)
    text = refusal(rules)
    assert text.startswith(f"{path}:{line_of(path, at)}: ")
    assert message in text


def test_a_duplicate_names_the_line_it_repeats(tmp_path):
    rules = copy(tmp_path)
    path = edit(rules, "scoring.csv", "form_fill,consideration,10,20,every",
                "form_fill,consideration,10,20,every\nform_fill,decision,15,,first")
    assert refusal(rules).endswith(f"already scored on line {line_of(path, 'form_fill,consideration')}")


def test_a_sheet_saved_in_a_legacy_encoding_is_refused_with_its_line(tmp_path):
    rules = copy(tmp_path)
    path = rules / "scoring.csv"
    path.write_bytes(path.read_bytes() + "page_view:/café,decision,5,,first\n".encode("cp1252"))
    assert refusal(rules).startswith(f"{path}:{line_of(CONFIG_DIR / 'scoring.csv', 'email_bounce') + 1}: not UTF-8")


@pytest.mark.parametrize("content, message", [("", "empty"), ("action,stage,readiness_pct\n", "no scoring rules")])
def test_an_empty_sheet_is_refused(tmp_path, content, message):
    rules = copy(tmp_path)
    (rules / "scoring.csv").write_text(content)
    text = refusal(rules)
    assert text.startswith(str(rules / "scoring.csv")) and message in text


def test_a_missing_file_is_refused_by_name(tmp_path):
    rules = copy(tmp_path)
    (rules / "scoring.csv").unlink()
    assert refusal(rules).startswith(f"{rules / 'scoring.csv'}: cannot read")


# ------------------------------------------------------------------------------------------ mistakes in the settings

YAML_MISTAKES = [
    ("threshold not a number", "readiness_threshold: 100 ", "readiness_threshold: lots ", "readiness_threshold: lots",
     "readiness_threshold must be a number, not 'lots'"),
    ("threshold zero", "readiness_threshold: 100 ", "readiness_threshold: 0 ", "readiness_threshold: 0",
     "readiness_threshold must be positive"),
    ("unknown setting", "readiness_threshold: 100 ", "readiness_threshold: 100\nthreshold: 3\n", "threshold: 3",
     "unknown setting 'threshold'"),
    ("invalid YAML", "  floor: 0", "  floor: 0\n  steps: [{after_days: 30, keep_pct: 50}\n  oops", "  oops",
     "invalid YAML"),
    ("tab indentation", "  floor: 0", "\tfloor: 0", "\tfloor", "invalid YAML"),
    ("both half-life and steps", "  floor: 0", "  floor: 0\n  steps: [{after_days: 30, keep_pct: 50}]", "  steps: [",
     "decay takes half_life_days or steps, not both"),
    ("half-life not positive", "half_life_days: 30 ", "half_life_days: -3 ", "half_life_days",
     "half_life_days must be positive"),
    ("floor not a number", "  floor: 0", "  floor: zero", "floor: zero", "decay.floor must be a number"),
    ("misspelt decay setting", "half_life_days: 30 ", "halflife_days: 30 ", "halflife_days",
     "unknown setting 'halflife_days' in decay"),
    ("steps not a list", "half_life_days: 30 ", "steps: 30 ", "steps: 30", "decay.steps must be a list"),
    ("a step without keep_pct", "half_life_days: 30 ", "steps:\n    - {after_days: 30}\n", "- {after_days: 30}",
     "a decay step is {after_days: N, keep_pct: P}"),
    ("a step at day zero", "half_life_days: 30 ", "steps:\n    - {after_days: 0, keep_pct: 50}\n", "after_days: 0",
     "after_days must be >= 1 and keep_pct between 0 and 100"),
    ("a step keeping more than all", "half_life_days: 30 ", "steps:\n    - {after_days: 10, keep_pct: 150}\n",
     "keep_pct: 150", "keep_pct between 0 and 100"),
    ("steps that keep more later", "half_life_days: 30 ",
     "steps:\n    - {after_days: 30, keep_pct: 50}\n    - {after_days: 60, keep_pct: 80}\n", "keep_pct: 80",
     "steps must grow older and keep no more than the step before"),
    ("steps out of order", "half_life_days: 30 ",
     "steps:\n    - {after_days: 60, keep_pct: 50}\n    - {after_days: 30, keep_pct: 20}\n", "after_days: 30, keep_pct: 20",
     "steps must grow older"),
    ("unknown fit field", "    country:\n", "    shoe_size:\n", "shoe_size", "fit rules score lead fields"),
    ("unknown kind of fit rule", "      values: {US: 10", "      codes: {US: 10", "codes:", "unknown setting 'codes'"),
    ("fit value not a number", "Software: 25,", "Software: lots,", "Software: lots", "industry value 'Software'"),
    ("Norway read as a no", "NL: 10}", "NL: 10, NO: 10}", "NL: 10, NO", "False was read as a yes/no value"),
    ("range upside down", "{min: 50, max: 199, points: 10}", "{min: 500, max: 199, points: 10}", "min: 500",
     "min 500 is above max 199"),
    ("range without points", "{min: 50, max: 199, points: 10}", "{min: 50, max: 199}", "{min: 50, max: 199}",
     "a range is {min: N, max: M, points: P}"),
    ("keywords without words", "{words: [Student, Intern], points: -30}", "{word: Student, points: -30}",
     "word: Student", "keywords are {words: [..], points: P}"),
    ("grades rising", "grades: {A: 70, B: 45, C: 20}", "grades: {A: 70, B: 80, C: 20}", "grades:",
     "grade thresholds must not rise from A to C"),
    ("grade D given", "grades: {A: 70, B: 45, C: 20}", "grades: {A: 70, B: 45, C: 20, D: 0}", "grades:",
     "fit.grades gives the least points for A, B and C"),
    ("grade missing", "grades: {A: 70, B: 45, C: 20}", "grades: {A: 70, B: 45}", "grades:", "for A, B and C"),
    ("grade not a number", "grades: {A: 70, B: 45, C: 20}", "grades: {A: 70, B: x, C: 20}", "grades:",
     "grade B must be a number"),
    ("misspelt fit setting", "  disqualifiers:", "  disqualifier:", "disqualifier:", "unknown setting 'disqualifier'"),
    ("disqualifier without effect", "      effect: disqualify", "      effect: ban", "reason: works for a competitor",
     "a disqualifier has a reason and effect 'disqualify' or 'max_grade'"),
    ("bad max grade", "max_grade: C", "max_grade: E", "max_grade: E", "max_grade must be one of A, B, C, D, not 'E'"),
    ("domains not a list", "email_domains: [rivalrevops.example]", "email_domains: rivalrevops.example",
     "email_domains: rivalrevops.example", "email_domains must be a list"),
    ("disqualifier on an unknown field", "email_domains: [rivalrevops.example]",
     "field: employer\n      values: [RivalRevOps]", "field: employer", "unknown lead field 'employer'"),
    ("bad minimum grade", "mql_min_fit_grade: B", "mql_min_fit_grade: Z", "mql_min_fit_grade",
     "mql_min_fit_grade must be one of A, B, C, D, not 'Z'"),
    ("bad hand-raise grade", "hand_raise_min_fit_grade: C", "hand_raise_min_fit_grade: top", "hand_raise_min_fit_grade",
     "hand_raise_min_fit_grade must be one of"),
    ("unknown hand-raiser", "[demo_request, trial_signup, contact_sales]", "[demo_request, booth_visit]",
     "hand_raisers", "'booth_visit' is not a valid ActivityType"),
    ("hand-raisers not a list", "[demo_request, trial_signup, contact_sales]", "demo_request", "hand_raisers",
     "hand_raisers must be a list"),
    ("re-arm above the threshold", "rearm_below: 70", "rearm_below: 170", "rearm_below",
     "rearm_below must not be above the readiness threshold"),
    ("misspelt qualification setting", "  mql_min_fit_grade: B", "  mql_min_fit: B", "mql_min_fit:",
     "unknown setting 'mql_min_fit' in qualification"),
    ("misspelt cold setting", "    below: 5", "    under: 5", "under: 5", "unknown setting 'under'"),
    ("cold level not a number", "    below: 5", "    below: five", "below: five", "cold.below must be a number"),
    ("unknown details field", "details_fields: [first_name, last_name, company, title]",
     "details_fields: [first_name, phone]", "details_fields", "details_fields names unknown lead fields ['phone']"),
]


@pytest.mark.parametrize("problem, old, new, at, message", YAML_MISTAKES, ids=[m[0] for m in YAML_MISTAKES])
def test_a_mistake_in_the_settings_is_refused_with_the_file_line_and_problem(tmp_path, problem, old, new, at, message):
    rules = copy(tmp_path)
    path = edit(rules, "scoring.yaml", old, new)
    text = refusal(rules)
    assert text.startswith(f"{path}:{line_of(path, at)}: "), text
    assert message in text


def test_settings_that_are_not_a_mapping_are_refused(tmp_path):
    rules = copy(tmp_path)
    (rules / "scoring.yaml").write_text("- readiness_threshold: 100\n")
    assert refusal(rules) == f"{rules / 'scoring.yaml'}: expected a mapping"


def test_a_section_that_is_not_a_mapping_is_refused_at_its_line(tmp_path):
    rules = copy(tmp_path)
    (rules / "scoring.yaml").write_text("readiness_threshold: 100\n\ndecay: 30\n")
    assert refusal(rules) == f"{rules / 'scoring.yaml'}:3: decay must be a mapping"


def test_missing_settings_take_their_defaults(tmp_path):
    rules = copy(tmp_path)
    (rules / "scoring.yaml").write_text("readiness_threshold: 100\n")
    rulebook = load_rulebook(rules)
    assert rulebook.decay.half_life_days is None and rulebook.decay.steps == ()
    assert rulebook.fit.rules == () and rulebook.fit.grade_thresholds == (("A", 7000), ("B", 4500), ("C", 2000))
    assert rulebook.qualification.min_fit_grade == "B" and rulebook.qualification.rearm_below == 7000


# ------------------------------------------------------------------------------------------ versions

def test_the_same_rules_give_the_same_digest():
    assert load_rulebook(CONFIG_DIR).digest == load_rulebook(CONFIG_DIR).digest


@pytest.mark.parametrize("name, old, new", [
    ("scoring.csv", "whitepaper_download,consideration,30,60,every", "whitepaper_download,consideration,35,60,every"),
    ("scoring.csv", "whitepaper_download,consideration,30,60,every", "whitepaper_download,consideration,30,90,every"),
    ("scoring.csv", "whitepaper_download,consideration,30,60,every", "whitepaper_download,consideration,30,60,first"),
    ("scoring.csv", "page_view:/security,decision,5,10,1/day", "page_view:/Security,decision,5,10,1/day"),
    ("scoring.csv", "email_bounce,awareness,-20,,first\n", ""),
    ("scoring.yaml", "readiness_threshold: 100 ", "readiness_threshold: 120 "),
    ("scoring.yaml", "half_life_days: 30 ", "half_life_days: 45 "),
    ("scoring.yaml", "Software: 25", "Software: 30"),
    ("scoring.yaml", "rearm_below: 70", "rearm_below: 60"),
    ("scoring.yaml", "[gmail.com, yahoo.com", "[gmail.com, aol.com, yahoo.com"),
])
def test_a_changed_rule_is_a_new_version(tmp_path, name, old, new):
    rules = copy(tmp_path)
    edit(rules, name, old, new)
    assert load_rulebook(rules).digest != load_rulebook(CONFIG_DIR).digest


def test_moving_rows_of_the_sheet_is_not_a_new_version(tmp_path):
    rules = copy(tmp_path)
    path = rules / "scoring.csv"
    header, *rows = path.read_text().splitlines()
    path.write_text("\n".join([header, *reversed(rows)]) + "\n")
    moved = load_rulebook(rules)
    assert [r.action for r in moved.rules] != [r.action for r in load_rulebook(CONFIG_DIR).rules]
    assert moved.digest == load_rulebook(CONFIG_DIR).digest


def test_comments_blank_lines_and_yaml_layout_are_not_a_new_version(tmp_path):
    rules = copy(tmp_path)
    edit(rules, "scoring.csv", "form_fill,", "# forms\n\nform_fill,")
    edit(rules, "scoring.yaml", "readiness_threshold: 100       # at this many points",
         "\n\nreadiness_threshold:    100   # points")
    assert load_rulebook(rules).digest == load_rulebook(CONFIG_DIR).digest


@pytest.mark.parametrize("floor", ["-5", "100", "250"])
def test_a_decay_floor_below_zero_or_at_the_threshold_is_refused_with_its_line(tmp_path, floor):
    import shutil

    from config.rulebook import load_rulebook
    from config.settings import CONFIG_DIR

    for name in ("scoring.yaml", "scoring.csv"):
        shutil.copy(CONFIG_DIR / name, tmp_path / name)
    text = (tmp_path / "scoring.yaml").read_text()
    (tmp_path / "scoring.yaml").write_text(text.replace("  floor: 0", f"  floor: {floor}"))
    line = next(n for n, row in enumerate((tmp_path / "scoring.yaml").read_text().splitlines(), 1) if "floor:" in row)
    with pytest.raises(ConfigError, match=rf"scoring.yaml:{line}: decay.floor must be at least 0 and below"):
        load_rulebook(tmp_path)


# ------------------------------------------------------------------------------------------ a pasted draft

def test_a_pasted_sheet_or_settings_file_loads_as_that_file_would(tmp_path):
    rules = copy(tmp_path)
    sheet = edit(rules, "scoring.csv", "whitepaper_download,consideration,30", "whitepaper_download,consideration,50")
    settings = edit(rules, "scoring.yaml", "readiness_threshold: 100", "readiness_threshold: 120")
    from_files = load_rulebook(rules)
    assert load_rulebook(CONFIG_DIR, {"scoring.csv": sheet.read_text(), "scoring.yaml": settings.read_text()}) == from_files
    # one file pasted, the other read from the directory (a file given as None is read too)
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(CONFIG_DIR / "scoring.csv", other / "scoring.csv")
    shutil.copy(settings, other / "scoring.yaml")
    assert load_rulebook(rules, {"scoring.csv": (CONFIG_DIR / "scoring.csv").read_text(), "scoring.yaml": None}) == \
        load_rulebook(other) != from_files


def test_a_mistake_in_a_pasted_file_names_it_as_pasted_with_the_line():
    sheet = (CONFIG_DIR / "scoring.csv").read_text().replace("form_fill,consideration,10", "form_fill,consideration,ten")
    with pytest.raises(ConfigError) as error:
        load_rulebook(CONFIG_DIR, {"scoring.csv": sheet})
    assert str(error.value).startswith(f"pasted scoring.csv:{line_of(CONFIG_DIR / 'scoring.csv', 'form_fill,')}: ")
    with pytest.raises(ConfigError) as error:
        load_rulebook(CONFIG_DIR, {"scoring.yaml": "readiness_threshold: 100\ndecay: [1, 2]\n"})
    assert str(error.value).startswith("pasted scoring.yaml:2: ")
    with pytest.raises(ConfigError, match="a rulebook has no file routing.yaml"):
        load_rulebook(CONFIG_DIR, {"routing.yaml": "x: 1"})


# ------------------------------------------------------------------------------------------ numbers too large to score

# Scores are stored as centipoints in 32-bit columns: a number a marketer would never need is refused before it can
# overflow a score, with the file and line like every other mistake.
NUMBER_MISTAKES = [
    ("scoring.yaml", "threshold too large", "readiness_threshold: 100 ", "readiness_threshold: 250000 ",
     "readiness_threshold: 250000", "readiness_threshold must be at most 100,000 points, not 250000"),
    ("scoring.yaml", "threshold with a huge exponent", "readiness_threshold: 100 ", "readiness_threshold: 1e999999 ",
     "readiness_threshold:", "readiness_threshold must be at most 100,000 points"),
    ("scoring.yaml", "threshold infinite", "readiness_threshold: 100 ", "readiness_threshold: .inf ",
     "readiness_threshold:", "readiness_threshold must be a finite number"),
    ("scoring.yaml", "threshold not a number at all", "readiness_threshold: 100 ", "readiness_threshold: .nan ",
     "readiness_threshold:", "readiness_threshold must be a finite number"),
    ("scoring.yaml", "fit value too large", "Software: 25,", "Software: 1e9,", "Software: 1e9",
     "industry value 'Software' must be at most 100,000 points, not 1E+9"),
    ("scoring.yaml", "fit points too negative", "{words: [Student, Intern], points: -30}",
     "{words: [Student, Intern], points: -3000000}", "points: -3000000", "points must be at least -100,000 points"),
    ("scoring.yaml", "grade infinite", "grades: {A: 70, B: 45, C: 20}", "grades: {A: .inf, B: 45, C: 20}", "grades:",
     "grade A must be a finite number"),
    ("scoring.yaml", "cold level too large", "    below: 5", "    below: 5e12", "below: 5e12",
     "cold.below must be at most 100,000 points"),
    ("scoring.yaml", "range end beyond any company size", "{min: 200, max: 5000, points: 25}",
     "{min: 200, max: 5e99999, points: 25}", "min: 200, max: 5e99999", "max must be between"),
    ("scoring.yaml", "half-life too short to work out", "half_life_days: 30 ", "half_life_days: 1e-999999 ",
     "half_life_days", "half_life_days must be at least 0.01"),
    ("scoring.yaml", "a step beyond ten years", "half_life_days: 30 ", "steps: [{after_days: 1e99, keep_pct: 0}] ",
     "steps:", "after_days must be at most 3650"),
    ("scoring.csv", "cap too large", "form_fill,consideration,10,20,every", "form_fill,consideration,10,2000000,every",
     "form_fill,", "cap must be at most 100,000 points, not 2000000"),
    ("scoring.csv", "cap infinite", "form_fill,consideration,10,20,every", "form_fill,consideration,10,inf,every",
     "form_fill,", "cap must be a finite number"),
    ("scoring.csv", "a daily limit that limits nothing", "email_open,awareness,1,10,1/day",
     "email_open,awareness,1,10,99999999999999999999/day", "email_open,", "repeat allows at most 1,000/day"),
]


@pytest.mark.parametrize("name, problem, old, new, at, message", NUMBER_MISTAKES, ids=[m[1] for m in NUMBER_MISTAKES])
def test_a_number_too_large_to_score_is_refused_with_the_file_line_and_problem(tmp_path, name, problem, old, new, at,
                                                                               message):
    rules = copy(tmp_path)
    path = edit(rules, name, old, new)
    text = refusal(rules)
    assert text.startswith(f"{path}:{line_of(path, at)}: "), text
    assert message in text


def test_the_largest_numbers_allowed_still_load(tmp_path):
    rules = copy(tmp_path)
    edit(rules, "scoring.yaml", "readiness_threshold: 100 ", "readiness_threshold: 100000 ")
    edit(rules, "scoring.yaml", "Software: 25,", "Software: 100000,")
    assert load_rulebook(rules).readiness_threshold == 10_000_000


def test_a_rule_without_a_cap_worth_so_much_that_a_busy_lead_would_overflow_its_score_needs_a_cap(tmp_path):
    rules = copy(tmp_path)
    edit(rules, "scoring.yaml", "readiness_threshold: 100 ", "readiness_threshold: 1000 ")
    path = edit(rules, "scoring.csv", "form_fill,consideration,10,20,every", "form_fill,consideration,100,,every")
    text = refusal(rules)
    assert text.startswith(f"{path}:{line_of(path, 'form_fill,')}: 'form_fill' earns 1000 points each time without "
                           "a cap: 100,000 of them would be more than a score can hold (21,474,836 points); give it a cap")
    edit(rules, "scoring.csv", "form_fill,consideration,100,,every", "form_fill,consideration,100,5000,every")
    assert load_rulebook(rules).rule_for("form_fill", None).cap == 500_000


def test_caps_that_add_up_to_more_than_a_score_holds_are_refused_at_the_rule_that_tips_them_over(tmp_path):
    rules = copy(tmp_path)
    edit(rules, "scoring.yaml", "readiness_threshold: 100 ", "readiness_threshold: 100000 ")
    rows = "".join(f"page_view:/page-{n},consideration,50,100000,every\n" for n in range(250))
    path = edit(rules, "scoring.csv", "form_fill,consideration,10,20,every\n", rows)
    text = refusal(rules)
    assert text.startswith(f"{path}:{line_of(path, 'page_view:/page-214,')}: with this rule a lead could score ")
    assert text.endswith("more than a score can hold (21,474,836 points); lower the caps")


# ------------------------------------------------------------------------------------------ a key given twice

@pytest.mark.parametrize("old, new, key", [
    ("readiness_threshold: 100 ", "readiness_threshold: 100\nreadiness_threshold: 120\n", "readiness_threshold:"),
    ("half_life_days: 30 ", "half_life_days: 30\n  half_life_days: 45\n", "half_life_days:"),
    ("Software: 25,", "Software: 25, Software: 30,", "Software:"),
    ("    country:\n", "    industry:\n      values: {Software: 5}\n    country:\n", "    industry:"),
])
def test_a_key_given_twice_at_any_depth_is_refused_naming_both_lines(tmp_path, old, new, key):
    rules = copy(tmp_path)
    path = edit(rules, "scoring.yaml", old, new)
    lines = [n for n, text in enumerate(path.read_text().splitlines(), 1) if key in text]
    first, again = lines[0], lines[-1]
    both = f"on line {first}" if first == again else f"on lines {first} and {again}"
    assert refusal(rules) == f"{path}:{again}: {key.strip(' :')!r} is given twice, {both}: keep one"


def test_a_key_given_twice_in_the_sources_file_is_refused_too(tmp_path):
    from config.sources import load_sources

    path = tmp_path / "sources.yaml"
    path.write_text("sources:\n  - name: scans\n    kind: jsonl\n    path: scans.jsonl\n    path: other.jsonl\n")
    with pytest.raises(ConfigError) as error:
        load_sources(path, env={})
    assert str(error.value) == f"{path}:5: 'path' is given twice, on lines 4 and 5: keep one"


def test_a_merged_mapping_may_still_be_overridden_key_by_key(tmp_path):
    from config.loading import read_yaml

    path = tmp_path / "any.yaml"
    path.write_text("base: &base {kind: jsonl, path: a.jsonl}\nsource:\n  <<: *base\n  path: b.jsonl\n")
    assert read_yaml(path)["source"] == {"kind": "jsonl", "path": "b.jsonl"}

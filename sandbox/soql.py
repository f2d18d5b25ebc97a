"""A subset of SOQL for the Salesforce stand-in: parse a query, bind it to the schema, and run it over records.

Covered: SELECT fields (parent fields one level up, e.g. Owner.Name) or COUNT(), FROM, WHERE with AND / OR / NOT and
parentheses (AND and OR may not be mixed without them, as in SOQL), = != <> < <= > >= LIKE IN NOT IN, string literals
with SOQL's backslash escapes, numbers, true / false / null, date-time and date literals, TODAY / YESTERDAY /
TOMORROW / LAST_N_DAYS:n / NEXT_N_DAYS:n, ORDER BY (several fields, ASC / DESC, NULLS FIRST / LAST; nulls first by
default), LIMIT and OFFSET. String comparisons ignore case, as SOQL's do; ids compare exactly (15 or 18 characters).
Errors carry SOQL's own codes and its "ERROR at Row:r:Column:c" pointer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Callable, Iterable

from sandbox.salesforce_schema import Field, SObject, TEXT, day_of, full_id, parse_date, parse_datetime, render

KEYWORDS = {"SELECT", "FROM", "WHERE", "ORDER", "BY", "ASC", "DESC", "NULLS", "FIRST", "LAST", "LIMIT", "OFFSET",
            "AND", "OR", "NOT", "IN", "LIKE", "TRUE", "FALSE", "NULL"}
DATE_WORDS = {"TODAY": (0, 1), "YESTERDAY": (-1, 0), "TOMORROW": (1, 2)}
ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "b": "\b", "f": "\f", '"': '"', "'": "'", "\\": "\\"}
TYPE_NAMES = {"int": "integer", "double": "double", "currency": "double", "boolean": "boolean", "datetime": "dateTime",
              "date": "date"}
NO_COLUMN = ("No such column '{name}' on entity '{entity}'. If you are attempting to use a custom field, be sure to "
             "append the '__c' after the custom field name. Please reference your WSDL or the describe call for the "
             "appropriate names.")
NO_TYPE = ("sObject type '{name}' is not supported. If you are attempting to use a custom object, be sure to append "
           "the '__c' after the entity name. Please reference your WSDL or the describe call for the appropriate "
           "names.")
NO_RELATIONSHIP = ("Didn't understand relationship '{name}' in field path. If you are attempting to use a custom "
                   "relationship, be sure to append the '__r' after the custom relationship name. Please reference "
                   "your WSDL or the describe call for the appropriate names.")
_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,3})?(?:Z|[+-]\d{2}:?\d{2}))
  | (?P<date>\d{4}-\d{2}-\d{2})(?![\w:])
  | (?P<number>[+-]?\d+(?:\.\d+)?)(?![\w.])
  | (?P<op><=|>=|!=|<>|=|<|>)
  | (?P<punct>[(),])
  | (?P<word>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*(?::\d+)?)
  | (?P<quote>')
""", re.X)


class SoqlError(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code, self.message = code, message


def pointed(query: str, pos: int, message: str) -> str:
    """SOQL's error text: the line, a caret under the spot, its row and column, then the reason."""
    start = query.rfind("\n", 0, pos) + 1
    end = query.find("\n", pos)
    line = query[start:] if end == -1 else query[start:end]
    row, col = query.count("\n", 0, pos) + 1, pos - start + 1
    return f"\n{line}\n{' ' * (col - 1)}^\nERROR at Row:{row}:Column:{col}\n{message}"


# ---------------------------------------------------------------- tokens and syntax

@dataclass(frozen=True)
class Token:
    kind: str  # word, keyword, string, number, datetime, date, op, punct, eof
    value: Any
    pos: int
    like: str | None = None  # a string literal as a LIKE pattern (regex source)


@dataclass(frozen=True)
class Ref:
    path: str
    pos: int


@dataclass(frozen=True)
class Query:
    fields: tuple[Ref, ...]
    count: bool
    sobject: Ref
    where: tuple | None
    order: tuple[tuple[Ref, bool, bool | None], ...]  # (field, descending, nulls last or None for the default)
    limit: int | None
    offset: int
    text: str


def _string(text: str, start: int) -> tuple[Token, int]:
    """A quoted literal from the quote at `start`: its value, and the same text as a LIKE pattern."""
    value, pattern, i = [], [], start + 1
    while i < len(text):
        c = text[i]
        if c == "'":
            return Token("string", "".join(value), start, "".join(pattern)), i + 1
        if c == "\\":
            if i + 1 >= len(text):
                break
            nxt = text[i + 1]
            if nxt in ("%", "_"):
                value.append(nxt)
                pattern.append(re.escape(nxt))
            elif nxt.lower() in ESCAPES or nxt in ESCAPES:
                char = ESCAPES.get(nxt, ESCAPES.get(nxt.lower()))
                value.append(char)
                pattern.append(re.escape(char))
            else:
                raise SoqlError("MALFORMED_QUERY", pointed(text, i, f"Invalid string literal '{text[start:i + 2]}'. "
                                                                     f"Illegal escape sequence '\\{nxt}'"))
            i += 2
            continue
        value.append(c)
        pattern.append(".*" if c == "%" else "." if c == "_" else re.escape(c))
        i += 1
    row_col = f"{text.count(chr(10), 0, len(text)) + 1}:{len(text) - text.rfind(chr(10)) - 1}"
    raise SoqlError("MALFORMED_QUERY", f"line {row_col} mismatched character '<EOF>' expecting '''")


def tokenize(text: str) -> list[Token]:
    tokens, i = [], 0
    while i < len(text):
        match = _TOKEN.match(text, i)
        if not match:
            raise SoqlError("MALFORMED_QUERY", pointed(text, i, f"no viable alternative at character '{text[i]}'"))
        kind = match.lastgroup
        if kind == "quote":
            token, i = _string(text, i)
            tokens.append(token)
            continue
        raw = match.group(kind)
        if kind == "word" and raw.upper() in KEYWORDS:
            tokens.append(Token("keyword", raw.upper(), i))
        elif kind == "number":
            tokens.append(Token(kind, float(raw) if "." in raw else int(raw), i))
        elif kind != "space":
            tokens.append(Token(kind, raw, i))
        i = match.end()
    tokens.append(Token("eof", None, len(text)))
    return tokens


class _Parser:
    def __init__(self, text: str):
        self.text, self.tokens, self.i = text, tokenize(text), 0

    def peek(self) -> Token:
        return self.tokens[self.i]

    def take(self) -> Token:
        token = self.tokens[self.i]
        self.i += 1
        return token

    def unexpected(self, token: Token | None = None) -> SoqlError:
        token = token or self.peek()
        shown = "<EOF>" if token.kind == "eof" else str(token.value if token.kind != "string" else f"'{token.value}'")
        return SoqlError("MALFORMED_QUERY", pointed(self.text, token.pos, f"unexpected token: {shown}"))

    def at(self, *keywords: str) -> bool:
        token = self.peek()
        return token.kind == "keyword" and token.value in keywords

    def keyword(self, word: str) -> Token:
        if not self.at(word):
            raise self.unexpected()
        return self.take()

    def punct(self, char: str) -> Token:
        token = self.peek()
        if token.kind != "punct" or token.value != char:
            raise self.unexpected()
        return self.take()

    def ref(self) -> Ref:
        token = self.take()
        if token.kind != "word" or ":" in token.value:
            raise self.unexpected(token)
        return Ref(token.value, token.pos)

    def integer(self) -> int:
        token = self.take()
        if token.kind != "number" or not isinstance(token.value, int) or token.value < 0:
            raise self.unexpected(token)
        return token.value

    def query(self) -> Query:
        self.keyword("SELECT")
        count, fields = False, []
        token = self.peek()
        if token.kind == "word" and token.value.upper() == "COUNT" and self.tokens[self.i + 1].value == "(":
            self.take(), self.punct("("), self.punct(")")
            count = True
        else:
            fields.append(self.ref())
            while self.peek().value == ",":
                self.take()
                fields.append(self.ref())
        self.keyword("FROM")
        sobject = self.ref()
        where = None
        if self.at("WHERE"):
            self.take()
            where = self.condition()
        order: list[tuple[Ref, bool, bool | None]] = []
        if self.at("ORDER"):
            self.take(), self.keyword("BY")
            order.append(self.order_item())
            while self.peek().value == ",":
                self.take()
                order.append(self.order_item())
        limit = offset = None
        if self.at("LIMIT"):
            self.take()
            limit = self.integer()
        if self.at("OFFSET"):
            self.take()
            offset = self.integer()
        if self.peek().kind != "eof":
            raise self.unexpected()
        return Query(tuple(fields), count, sobject, where, tuple(order), limit, offset or 0, self.text)

    def order_item(self) -> tuple[Ref, bool, bool | None]:
        ref, descending, nulls_last = self.ref(), False, None
        if self.at("ASC", "DESC"):
            descending = self.take().value == "DESC"
        if self.at("NULLS"):
            self.take()
            if not self.at("FIRST", "LAST"):
                raise self.unexpected()
            nulls_last = self.take().value == "LAST"
        return ref, descending, nulls_last

    def condition(self) -> tuple:
        """Terms joined by one kind of operator: SOQL wants parentheses to mix AND with OR."""
        terms, joiner = [self.term()], None
        while self.at("AND", "OR"):
            word = self.peek()
            if joiner and word.value != joiner:
                raise self.unexpected(word)
            joiner = self.take().value
            terms.append(self.term())
        return terms[0] if joiner is None else (joiner.lower(), tuple(terms))

    def term(self) -> tuple:
        if self.at("NOT"):
            self.take()
            return ("not", self.term())
        if self.peek().value == "(" and self.peek().kind == "punct":
            self.take()
            inner = self.condition()
            self.punct(")")
            return inner
        ref = self.ref()
        token = self.peek()
        if token.kind == "op":
            self.take()
            return ("cmp", ref, "!=" if token.value == "<>" else token.value, self.literal())
        negated = False
        if self.at("NOT"):
            self.take()
            negated = True
            if not self.at("IN"):
                raise self.unexpected()
        if self.at("IN"):
            self.take(), self.punct("(")
            values = [self.literal()]
            while self.peek().value == ",":
                self.take()
                values.append(self.literal())
            self.punct(")")
            return ("in", ref, negated, tuple(values))
        if self.at("LIKE"):
            self.take()
            literal = self.literal()
            if literal.kind != "string":
                raise self.unexpected(literal)
            return ("like", ref, literal)
        raise self.unexpected()

    def literal(self) -> Token:
        token = self.take()
        if token.kind in ("string", "number", "datetime", "date"):
            return token
        if token.kind == "keyword" and token.value in ("TRUE", "FALSE", "NULL"):
            return Token("null" if token.value == "NULL" else "bool", token.value == "TRUE", token.pos)
        if token.kind == "word" and _date_word(token.value) is not None:
            return Token("dateword", token.value.upper(), token.pos)
        raise self.unexpected(token)


def _date_word(word: str) -> tuple[int, int] | None:
    """A date literal as whole days from today: (first day, day after the last)."""
    upper = word.upper()
    if upper in DATE_WORDS:
        return DATE_WORDS[upper]
    name, _, n = upper.partition(":")
    if n.isdigit() and name == "LAST_N_DAYS":
        return (-int(n), 1)
    if n.isdigit() and name == "NEXT_N_DAYS":
        return (1, int(n) + 1)
    return None


@lru_cache(maxsize=512)
def parse(text: str) -> Query:
    return _Parser(text).query()


# ---------------------------------------------------------------- binding to the schema

Lookup = Callable[[str | None], tuple[str, dict] | None]  # an id -> (object name, record), or None


@dataclass
class Column:
    name: str  # canonical field name
    field: Field
    relationship: Field | None = None  # the id field a parent path goes through
    polymorphic: bool = False
    get: Callable[[dict], Any] = field(default=lambda r: None, repr=False)


@dataclass
class Plan:
    sobject: SObject
    columns: list[Column]
    count: bool
    predicate: Callable[[dict], bool] | None
    order: list[tuple[Column, bool, bool]]
    limit: int | None
    offset: int
    keys: tuple[str, list] | None  # (field, values) from a top-level `=` / IN an index can answer
    lookup: Lookup

    def run(self, records: Iterable[dict]) -> list[dict]:
        chosen = [r for r in records if self.predicate(r)] if self.predicate else list(records)
        for column, descending, nulls_last in reversed(self.order):
            null_rank = 1 if nulls_last != descending else 0
            chosen.sort(key=_sort_key(column, null_rank), reverse=descending)
        end = self.offset + self.limit if self.limit is not None else None
        return chosen[self.offset:end]

    def render(self, record: dict, version: str) -> dict:
        name = self.sobject.name
        url = f"/services/data/v{version}/sobjects/{name}/{record['Id']}"
        out: dict[str, Any] = {"attributes": {"type": name, "url": url}}
        for column in self.columns:
            if column.relationship is None:
                out[column.name] = render(column.field, record.get(column.name))
                continue
            rel = column.relationship.relationship
            if rel not in out:
                out[rel] = self._parent(record.get(column.relationship.name), column.polymorphic, version)
            if out[rel] is not None:
                out[rel][column.name] = render(column.field, column.get(record))
        return out

    def _parent(self, parent_id: str | None, polymorphic: bool, version: str) -> dict | None:
        found = self.lookup(parent_id)
        if found is None:
            return None
        kind, _ = found
        return {"attributes": {"type": "Name" if polymorphic else kind,
                               "url": f"/services/data/v{version}/sobjects/{kind}/{parent_id}"}}


def _sort_key(column: Column, null_rank: int) -> Callable[[dict], tuple]:
    """Nulls where asked; text without regard to case; picklists in the order the picklist defines."""
    get, f = column.get, column.field
    positions = {value: n for n, value in enumerate(f.picklist)} if f.type == "picklist" else None
    text = f.type in TEXT

    def key(record: dict) -> tuple:
        value = get(record)
        if value is None:
            return (null_rank, 0, False)
        if positions is not None:
            return (1 - null_rank, positions.get(value, len(positions)), value.lower())
        return (1 - null_rank, 0, value.lower() if text else value)
    return key


class _Binder:
    def __init__(self, query: Query, schema: dict[str, SObject], lookup: Lookup, now: int):
        self.query, self.schema, self.lookup, self.now = query, schema, lookup, now
        found = schema.get(query.sobject.path.lower())
        if found is None:
            raise self.error(query.sobject.pos, "INVALID_TYPE", NO_TYPE.format(name=query.sobject.path))
        self.sobject = found

    def error(self, pos: int, code: str, message: str) -> SoqlError:
        return SoqlError(code, pointed(self.query.text, pos, message))

    def column(self, ref: Ref) -> Column:
        parts = ref.path.split(".")
        if len(parts) > 1 and parts[0].lower() == self.sobject.name.lower():
            parts = parts[1:]  # `Lead.Email` names the queried object's own field
        if len(parts) == 1:
            f = self.sobject.field(parts[0])
            if f is None:
                raise self.error(ref.pos, "INVALID_FIELD", NO_COLUMN.format(name=parts[0], entity=self.sobject.name))
            return Column(f.name, f, get=lambda r, n=f.name: r.get(n))
        if len(parts) > 2:
            raise self.error(ref.pos, "INVALID_FIELD", NO_RELATIONSHIP.format(name=parts[0]))
        via = self.sobject.relationship(parts[0])
        if via is None:
            raise self.error(ref.pos, "INVALID_FIELD", NO_RELATIONSHIP.format(name=parts[0]))
        polymorphic = len(via.reference_to) > 1
        if polymorphic and parts[1].lower() == "type":
            leaf = Field("Type", "string", "Type", length=40)
            get = self._parent_getter(via.name, None)
        else:
            targets = [self.schema[t.lower()] for t in via.reference_to]
            leaf = next((t.field(parts[1]) for t in targets if t.field(parts[1])), None)
            if leaf is None:
                entity = "Name" if polymorphic else targets[0].name
                raise self.error(ref.pos, "INVALID_FIELD", NO_COLUMN.format(name=parts[1], entity=entity))
            get = self._parent_getter(via.name, leaf.name)
        return Column(leaf.name, leaf, relationship=via, polymorphic=polymorphic, get=get)

    def _parent_getter(self, id_field: str, leaf: str | None) -> Callable[[dict], Any]:
        lookup = self.lookup

        def get(record: dict) -> Any:
            found = lookup(record.get(id_field))
            if found is None:
                return None
            kind, parent = found
            if leaf is None:  # Name.Type: the owner's kind, where a queue shows as "Queue"
                return parent.get("Type") if kind == "Group" else kind
            return parent.get(leaf)
        return get

    def bind(self) -> Plan:
        q = self.query
        columns, seen = [], set()
        for ref in q.fields:
            column = self.column(ref)
            key = (column.relationship.name if column.relationship else "", column.name)
            if key in seen:
                raise self.error(ref.pos, "MALFORMED_QUERY", f"duplicate field selected: {ref.path}")
            seen.add(key)
            columns.append(column)
        predicate = self.predicate(q.where) if q.where is not None else None
        order = []
        for ref, descending, nulls_last in q.order:
            order.append((self.column(ref), descending, bool(nulls_last)))
        return Plan(self.sobject, columns, q.count, predicate, order, q.limit, q.offset, self.keys(q.where),
                    self.lookup)

    def keys(self, where: tuple | None) -> tuple[str, list] | None:
        """A top-level `Id` / external id / Email equality or IN list, so the org can use an index."""
        terms = where[1] if where and where[0] == "and" else (where,) if where else ()
        for term in terms:
            if term[0] not in ("cmp", "in") or (term[0] == "cmp" and term[2] != "="):
                continue
            if term[0] == "in" and term[2]:
                continue
            column = self.column(term[1])
            f = column.field
            if column.relationship or not (f.name in ("Id", "Email") or f.external_id):
                continue
            literals = (term[3],) if term[0] == "cmp" else term[3]
            values = [self.value(f, lit, term[1]) for lit in literals]
            return f.name, [v for v in values if v is not None and not isinstance(v, tuple)]
        return None

    def value(self, f: Field, lit: Token, ref: Ref) -> Any:
        """A literal as the field stores it; a date word becomes a (low, high) range."""
        kind = f.type
        if lit.kind == "null":
            return None
        if kind in TEXT or kind in ("id", "reference"):
            if lit.kind != "string":
                raise self.error(lit.pos, "INVALID_FIELD",
                                 f"value of filter criterion for field '{f.name}' must be of type string and should "
                                 "be enclosed in quotes")
            if kind in ("id", "reference"):
                normal = full_id(lit.value)
                if normal is None:
                    raise self.error(lit.pos, "INVALID_QUERY_FILTER_OPERATOR", f"invalid ID field: {lit.value}")
                return normal
            return lit.value.lower()
        wanted = {"int": ("number",), "double": ("number",), "currency": ("number",), "boolean": ("bool",),
                  "datetime": ("datetime", "dateword"), "date": ("date", "dateword")}.get(kind, ())
        if lit.kind not in wanted:
            raise self.error(lit.pos, "INVALID_FIELD",
                             f"value of filter criterion for field '{f.name}' must be of type "
                             f"{TYPE_NAMES.get(kind, kind)} and should not be enclosed in quotes")
        if lit.kind == "datetime":
            epoch = parse_datetime(lit.value)
            if epoch is None:
                raise self.error(lit.pos, "MALFORMED_QUERY", f"line 1:{lit.pos} no viable alternative at character ' '")
            return epoch
        if lit.kind == "date":
            day = parse_date(lit.value)
            if day is None:
                raise self.error(lit.pos, "MALFORMED_QUERY", f"invalid date: {lit.value}")
            return day
        if lit.kind == "dateword":
            first, after = _date_word(lit.value)
            midnight = self.now - self.now % 86400
            low, high = midnight + first * 86400, midnight + after * 86400
            return (low, high) if kind == "datetime" else (day_of(low), day_of(high))
        return lit.value

    def predicate(self, node: tuple) -> Callable[[dict], bool]:
        kind = node[0]
        if kind in ("and", "or"):
            parts = [self.predicate(n) for n in node[1]]
            return (lambda r: all(p(r) for p in parts)) if kind == "and" else (lambda r: any(p(r) for p in parts))
        if kind == "not":
            inner = self.predicate(node[1])
            return lambda r: not inner(r)
        column = self.column(node[1])
        get, text = column.get, column.field.type in TEXT
        if kind == "like":
            pattern = re.compile(node[2].like, re.IGNORECASE | re.DOTALL)
            return lambda r: (v := get(r)) is not None and pattern.fullmatch(str(v)) is not None
        if kind == "in":
            tests = [_matcher("=", self.value(column.field, lit, node[1]), text) for lit in node[3]]
            if node[2]:
                return lambda r: not any(t(get(r)) for t in tests)
            return lambda r: any(t(get(r)) for t in tests)
        test = _matcher(node[2], self.value(column.field, node[3], node[1]), text)
        return lambda r: test(get(r))


def _matcher(op: str, literal: Any, text: bool) -> Callable[[Any], bool]:
    """A test of one stored value against one literal, with SOQL's null rules (only `=`/`!=` see nulls)."""
    if isinstance(literal, tuple):
        low, high = literal
        inside = {"=": lambda v: low <= v < high, "!=": lambda v: not low <= v < high, "<": lambda v: v < low,
                  "<=": lambda v: v < high, ">": lambda v: v >= high, ">=": lambda v: v >= low}[op]
        return lambda v: op == "!=" if v is None else inside(v)
    if literal is None:
        return (lambda v: v is None) if op == "=" else (lambda v: v is not None) if op == "!=" else (lambda v: False)
    compare = {"=": lambda a, b: a == b, "!=": lambda a, b: a != b, "<": lambda a, b: a < b, "<=": lambda a, b: a <= b,
               ">": lambda a, b: a > b, ">=": lambda a, b: a >= b}[op]
    if text:
        return lambda v: op == "!=" if v is None else compare(v.lower(), literal)
    return lambda v: op == "!=" if v is None else compare(v, literal)


def plan(text: str, schema: dict[str, SObject], lookup: Lookup, now: int) -> Plan:
    """Parse (cached) and bind one query; raises SoqlError with the code a real org answers."""
    return _Binder(parse(text), schema, lookup, now).bind()

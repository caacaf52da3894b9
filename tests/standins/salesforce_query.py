"""SOQL and SOSL for the Salesforce stand-in: a documented subset, parsed safely (a real
tokenizer, no eval, no regex-on-the-whole-query) and evaluated against the org's records.

SOQL: ``SELECT f1, Rel.f2 | COUNT() FROM SObject [WHERE cond] [ORDER BY f [ASC|DESC]
[NULLS FIRST|LAST], ...] [LIMIT n] [OFFSET n]``. Conditions use =, !=, <>, <, <=, >, >=,
[NOT] IN (...), LIKE, NOT and parentheses; AND and OR may not be mixed without
parentheses (as in SOQL). Literals: 'strings' with backslash escapes, numbers, TRUE,
FALSE, NULL, dates, datetimes, TODAY/YESTERDAY/TOMORROW. String comparisons are
case-insensitive, as in SOQL. Field types are enforced like the real parser (a quoted
value on a boolean field is INVALID_QUERY_FILTER_OPERATOR, a long text area cannot be
filtered or sorted, ...).

SOSL: ``FIND {term} [IN ALL|NAME|EMAIL|PHONE FIELDS] [RETURNING Obj[(fields [WHERE ...]
[ORDER BY ...] [LIMIT n])], ...] [LIMIT n]``. Reserved characters inside the braces
(``? & | ! { } [ ] ( ) ^ ~ * : \\ " ' + -``) must be escaped with a backslash; unescaped,
``*`` and ``?`` are wildcards and ``"`` quotes a phrase, and any other is
MALFORMED_SEARCH. Phone fields match by :func:`phone_key` (digits only, a leading US
``1`` dropped from 11 digits; equal keys match, no partial numbers): "(415) 555-0100" and
"+1 415-555-0100" both match ``FIND {4155550100}`` and ``FIND {\\+14155550100}``; a term
of several words (``{\\(415\\) 555\\-0100}``) also matches a phone whose key equals the
words' digits run together. A record created through the API is found by SOSL only once
the org's search index has caught up (``Org.index_lag_seconds``); SOQL sees it at once.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import re
from dataclasses import dataclass
from typing import Any

from tests.standins.salesforce_records import (
    ApiError,
    Org,
    Record,
    normalize_datetime,
    normalize_id,
    phone_key,
)
from tests.standins.salesforce_schema import FieldSpec, SObjectSpec

_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<string>'(?:\\.|[^'\\])*')
  | (?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2}))
  | (?P<date>\d{4}-\d{2}-\d{2})
  | (?P<number>-?\d+(?:\.\d+)?)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
  | (?P<op><=|>=|!=|<>|[=<>(),])
    """,
    re.VERBOSE,
)
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "b": "\b", "f": "\f", "'": "'", '"': '"', "\\": "\\"}
_LIKE_ESCAPES = {"_": "\x00_", "%": "\x00%"}
_SOSL_RESERVED = set("?&|!{}[]()^~*:\\\"'+-")
_DATE_CONSTANTS = {"TODAY": 0, "YESTERDAY": -1, "TOMORROW": 1}


@dataclass(frozen=True, slots=True)
class Token:
    kind: str
    text: str
    pos: int
    value: Any = None

    def keyword(self, *words: str) -> bool:
        return self.kind == "ident" and self.text.upper() in words


@dataclass(frozen=True, slots=True)
class FieldRef:
    """A selected or filtered field, possibly through one parent relationship."""

    name: str  # canonical field name on the target object
    fspec: FieldSpec
    relationship: FieldSpec | None = None  # the reference field (AccountId) when dotted


@dataclass(frozen=True, slots=True)
class Comparison:
    field: FieldRef
    op: str
    value: Any


@dataclass(frozen=True, slots=True)
class BoolOp:
    op: str
    items: tuple[Condition, ...]


@dataclass(frozen=True, slots=True)
class Not:
    item: Condition


Condition = Comparison | BoolOp | Not


@dataclass(frozen=True, slots=True)
class Ordering:
    field: FieldRef
    descending: bool
    nulls_first: bool


@dataclass(frozen=True, slots=True)
class Select:
    """A parsed SOQL query (or one RETURNING clause of a SOSL search)."""

    spec: SObjectSpec
    fields: tuple[FieldRef, ...] | None  # None: COUNT()
    where: Condition | None = None
    order: tuple[Ordering, ...] = ()
    limit: int | None = None
    offset: int = 0


class _Syntax(Exception):
    """A parse error at a token; turned into MALFORMED_QUERY or MALFORMED_SEARCH."""

    def __init__(self, token: Token, detail: str | None = None):
        super().__init__(detail or f"unexpected token: '{token.text or '<EOF>'}'")
        self.token = token


def tokenize(text: str, offset: int = 0) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            raise _Syntax(Token("op", text[pos], pos + offset))
        kind = match.lastgroup or ""
        raw = match.group()
        if kind != "space":
            value: Any = None
            if kind == "string":
                value = _unescape(raw[1:-1], Token(kind, raw, pos + offset))
            elif kind == "number":
                value = float(raw) if "." in raw else int(raw)
            tokens.append(Token(kind, raw, pos + offset, value))
        pos = match.end()
    tokens.append(Token("eof", "", len(text) + offset))
    return tokens


def _unescape(body: str, token: Token) -> str:
    out = []
    chars = iter(body)
    for char in chars:
        if char != "\\":
            out.append(char)
            continue
        nxt = next(chars, "")
        if nxt in _ESCAPES:
            out.append(_ESCAPES[nxt])
        elif nxt in _LIKE_ESCAPES:
            out.append(_LIKE_ESCAPES[nxt])
        else:
            raise _Syntax(
                token, f"Invalid string literal '{body}'. Illegal character sequence '\\{nxt}'"
            )
    return "".join(out)


class _Parser:
    """Recursive descent over tokens; resolves field names against the org's schema."""

    def __init__(self, org: Org, tokens: list[Token]):
        self.org = org
        self.tokens = tokens
        self.index = 0

    @property
    def current(self) -> Token:
        return self.tokens[self.index]

    def advance(self) -> Token:
        token = self.tokens[self.index]
        self.index = min(self.index + 1, len(self.tokens) - 1)
        return token

    def expect_keyword(self, *words: str) -> Token:
        if not self.current.keyword(*words):
            raise _Syntax(self.current)
        return self.advance()

    def expect_op(self, op: str) -> Token:
        if self.current.kind != "op" or self.current.text != op:
            raise _Syntax(self.current)
        return self.advance()

    def at_op(self, op: str) -> bool:
        return self.current.kind == "op" and self.current.text == op

    # ----- SELECT

    def parse_query(self) -> Select:
        self.expect_keyword("SELECT")
        selected = self.parse_field_names()
        self.expect_keyword("FROM")
        spec = self.parse_sobject()
        fields = None if selected is None else tuple(self.resolve(spec, t) for t in selected)
        select = self.parse_tail(spec, fields, allow_offset=True)
        if self.current.kind != "eof":
            raise _Syntax(self.current)
        return select

    def parse_field_names(self) -> list[Token] | None:
        if self.current.keyword("COUNT") and self.tokens[self.index + 1].text == "(":
            self.advance()
            self.expect_op("(")
            self.expect_op(")")
            return None
        names = [self.expect_ident()]
        while self.at_op(","):
            self.advance()
            names.append(self.expect_ident())
        return names

    def expect_ident(self) -> Token:
        if self.current.kind != "ident" or self.current.keyword("FROM", "WHERE"):
            raise _Syntax(self.current)
        return self.advance()

    def parse_sobject(self) -> SObjectSpec:
        token = self.current
        if token.kind != "ident" or "." in token.text:
            raise _Syntax(token)
        self.advance()
        spec = self.org.spec(token.text)
        if spec is None:
            raise _invalid_type(token.text)
        return spec

    def parse_tail(
        self, spec: SObjectSpec, fields: tuple[FieldRef, ...] | None, *, allow_offset: bool
    ) -> Select:
        where = None
        if self.current.keyword("WHERE"):
            self.advance()
            where = self.parse_condition(spec)
        order: list[Ordering] = []
        if self.current.keyword("ORDER"):
            self.advance()
            self.expect_keyword("BY")
            order.append(self.parse_ordering(spec))
            while self.at_op(","):
                self.advance()
                order.append(self.parse_ordering(spec))
        limit = offset = None
        if self.current.keyword("LIMIT"):
            self.advance()
            limit = self.parse_count()
        if allow_offset and self.current.keyword("OFFSET"):
            self.advance()
            offset = self.parse_count()
        return Select(spec, fields, where, tuple(order), limit, offset or 0)

    def parse_count(self) -> int:
        token = self.current
        if token.kind != "number" or not isinstance(token.value, int) or token.value < 0:
            raise _Syntax(token)
        self.advance()
        return int(token.value)

    def parse_ordering(self, spec: SObjectSpec) -> Ordering:
        token = self.expect_ident()
        ref = self.resolve(spec, token)
        if ref.fspec.is_long_text:
            raise _field_error(token, f"field '{ref.name}' can not be sorted in a query call")
        descending = False
        if self.current.keyword("ASC", "DESC"):
            descending = self.advance().text.upper() == "DESC"
        nulls_first = not descending
        if self.current.keyword("NULLS"):
            self.advance()
            nulls_first = self.expect_keyword("FIRST", "LAST").text.upper() == "FIRST"
        return Ordering(ref, descending, nulls_first)

    # ----- WHERE

    def parse_condition(self, spec: SObjectSpec) -> Condition:
        items = [self.parse_term(spec)]
        joiner: str | None = None
        while self.current.keyword("AND", "OR"):
            word = self.current.text.upper()
            if joiner is not None and word != joiner:
                # SOQL needs parentheses to mix AND and OR.
                raise _Syntax(self.current)
            joiner = word
            self.advance()
            items.append(self.parse_term(spec))
        return items[0] if joiner is None else BoolOp(joiner, tuple(items))

    def parse_term(self, spec: SObjectSpec) -> Condition:
        if self.current.keyword("NOT"):
            self.advance()
            return Not(self.parse_term(spec))
        if self.at_op("("):
            self.advance()
            inner = self.parse_condition(spec)
            self.expect_op(")")
            return inner
        return self.parse_comparison(spec)

    def parse_comparison(self, spec: SObjectSpec) -> Comparison:
        token = self.expect_ident()
        ref = self.resolve(spec, token)
        if ref.fspec.is_long_text:
            raise _field_error(token, f"field '{ref.name}' can not be filtered in a query call")
        if self.current.keyword("NOT") and self.tokens[self.index + 1].keyword("IN"):
            self.advance()
            self.advance()
            return Comparison(ref, "NOT IN", self.parse_value_list(ref))
        if self.current.keyword("IN"):
            self.advance()
            return Comparison(ref, "IN", self.parse_value_list(ref))
        if self.current.keyword("LIKE"):
            self.advance()
            if not ref.fspec.is_text:
                raise _filter_error(f"invalid operator on {ref.fspec.type} field")
            literal = self.current
            if literal.kind != "string":
                raise _Syntax(literal)
            self.advance()
            return Comparison(ref, "LIKE", literal.value)
        if self.current.kind != "op" or self.current.text in {"(", ")", ","}:
            raise _Syntax(self.current)
        op = self.advance().text
        return Comparison(ref, "!=" if op == "<>" else op, self.parse_value(ref))

    def parse_value_list(self, ref: FieldRef) -> tuple[Any, ...]:
        self.expect_op("(")
        if self.current.keyword("SELECT"):
            raise _Syntax(
                self.current, "semi-join sub-selects are outside the stand-in's SOQL subset"
            )
        values = [self.parse_value(ref)]
        while self.at_op(","):
            self.advance()
            values.append(self.parse_value(ref))
        self.expect_op(")")
        return tuple(values)

    def parse_value(self, ref: FieldRef) -> Any:
        token = self.advance()
        fspec = ref.fspec
        if token.keyword("NULL"):
            return None
        kind = fspec.type
        if kind == "boolean":
            if not token.keyword("TRUE", "FALSE"):
                raise _typed_error(token, ref, "boolean", quoted=False)
            return token.text.upper() == "TRUE"
        if fspec.is_number:
            if token.kind != "number":
                raise _typed_error(token, ref, "double" if kind != "int" else "int", quoted=False)
            return token.value
        if kind in {"date", "datetime"}:
            return _date_value(token, ref)
        if token.kind != "string":
            if token.kind in {"op", "eof"}:
                raise _Syntax(token)
            raise _typed_error(token, ref, "string", quoted=True)
        if kind in {"id", "reference"}:
            normalized = normalize_id(token.value)
            if normalized is None:
                raise _filter_error(f"invalid ID field: {token.value}")
            return normalized
        return token.value

    # ----- field resolution

    def resolve(self, spec: SObjectSpec, token: Token) -> FieldRef:
        parts = token.text.split(".")
        if len(parts) == 1:
            fspec = spec.field(parts[0])
            if fspec is None:
                raise _no_such_column(token, parts[0], spec.name)
            return FieldRef(fspec.name, fspec)
        if len(parts) == 2:
            relation = spec.relationship(parts[0])
            if relation is None:
                raise _field_error(
                    token,
                    f"Didn't understand relationship '{parts[0]}' in field path. If you are"
                    " attempting to use a custom relationship, be sure to append the '__r'"
                    " after the custom relationship name. Please reference your WSDL or the"
                    " describe call for the appropriate names.",
                )
            for target in relation.reference_to:
                target_spec = self.org.spec(target)
                fspec = target_spec.field(parts[1]) if target_spec else None
                if fspec is not None:
                    return FieldRef(fspec.name, fspec, relation)
            raise _no_such_column(token, parts[1], relation.reference_to[0])
        raise _field_error(
            token, "relationship paths deeper than one level are outside the stand-in's subset"
        )


# ---------------------------------------------------------------- errors


def _query_error(query: str, error: _Syntax, code: str = "MALFORMED_QUERY") -> ApiError:
    pos = error.token.pos
    return ApiError.of(
        400, code, f"\n{query}\n{' ' * pos}^\nERROR at Row:1:Column:{pos + 1}\n{error}"
    )


class _FieldError(_Syntax):
    pass


def _field_error(token: Token, detail: str) -> _FieldError:
    return _FieldError(token, detail)


def _no_such_column(token: Token, name: str, sobject: str) -> _FieldError:
    return _FieldError(
        token,
        f"No such column '{name}' on entity '{sobject}'. If you are attempting to use a custom"
        " field, be sure to append the '__c' after the custom field name. Please reference"
        " your WSDL or the describe call for the appropriate names.",
    )


def _invalid_type(name: str) -> ApiError:
    return ApiError.of(
        400,
        "INVALID_TYPE",
        f"sObject type '{name}' is not supported. If you are attempting to use a custom object,"
        " be sure to append the '__c' after the entity name. Please reference your WSDL or the"
        " describe call for the appropriate names.",
    )


def _filter_error(message: str) -> ApiError:
    return ApiError.of(400, "INVALID_QUERY_FILTER_OPERATOR", message)


def _typed_error(token: Token, ref: FieldRef, kind: str, *, quoted: bool) -> ApiError:
    enclosed = "should be enclosed in quotes" if quoted else "should not be enclosed in quotes"
    return _filter_error(
        f"value of filter criterion for field '{ref.name}' must be of type {kind} and {enclosed}"
    )


def _date_value(token: Token, ref: FieldRef) -> Any:
    if token.kind == "ident" and token.text.upper() in _DATE_CONSTANTS:
        today = dt.datetime.now(dt.UTC).date()
        return ("DAY", (today + dt.timedelta(days=_DATE_CONSTANTS[token.text.upper()])).isoformat())
    if ref.fspec.type == "date" and token.kind == "date":
        return token.text
    if ref.fspec.type == "datetime" and token.kind == "datetime":
        return normalize_datetime(token.text)
    raise _typed_error(token, ref, ref.fspec.type, quoted=False)


# ---------------------------------------------------------------- evaluation


def _value_of(org: Org, record: Record, ref: FieldRef) -> Any:
    if ref.relationship is None:
        return record.get(ref.name)
    target = org.find(str(record.get(ref.relationship.name) or ""))
    return target[1].get(ref.name) if target else None


def _key(fspec: FieldSpec, value: Any) -> Any:
    if fspec.type in {"id", "reference"}:
        return normalize_id(value) or value
    if fspec.is_text:
        return str(value).lower()
    if fspec.is_number:
        return float(value)
    return value


def _like(pattern: str, value: str) -> bool:
    regex = ""
    chars = iter(pattern)
    for char in chars:
        if char == "\x00":
            regex += re.escape(next(chars, ""))
        elif char == "%":
            regex += ".*"
        elif char == "_":
            regex += "."
        else:
            regex += re.escape(char)
    return re.fullmatch(regex, value, re.IGNORECASE | re.DOTALL) is not None


def _compare(fspec: FieldSpec, stored: Any, op: str, literal: Any) -> bool:
    if op in {"IN", "NOT IN"}:
        hit = any(_compare(fspec, stored, "=", item) for item in literal)
        return hit if op == "IN" else not hit
    if op == "LIKE":
        return stored is not None and _like(literal, str(stored))
    if isinstance(literal, tuple) and literal and literal[0] == "DAY":
        stored = str(stored)[:10] if stored is not None else None
        literal = literal[1]
    if literal is None:
        return (stored is None) == (op == "=") if op in {"=", "!="} else False
    if op == "=":
        return stored is not None and _key(fspec, stored) == _key(fspec, literal)
    if op == "!=":
        return stored is None or _key(fspec, stored) != _key(fspec, literal)
    if stored is None:
        return False
    left, right = _key(fspec, stored), _key(fspec, literal)
    return bool(
        {"<": left < right, "<=": left <= right, ">": left > right, ">=": left >= right}[op]
    )


def _matches(org: Org, record: Record, condition: Condition | None) -> bool:
    if condition is None:
        return True
    if isinstance(condition, Not):
        return not _matches(org, record, condition.item)
    if isinstance(condition, BoolOp):
        results = (_matches(org, record, item) for item in condition.items)
        return all(results) if condition.op == "AND" else any(results)
    value = _value_of(org, record, condition.field)
    return _compare(condition.field.fspec, value, condition.op, condition.value)


def _sort_key(org: Org, record: Record, ordering: Ordering) -> tuple[int, Any]:
    value = _value_of(org, record, ordering.field)
    if value is None:
        return (0 if ordering.nulls_first != ordering.descending else 2, "")
    return (1, _key(ordering.field.fspec, value))


def _render(org: Org, select: Select, record: Record, version: str) -> Record:
    out: Record = {"attributes": org.attributes(select.spec.name, record["Id"], version)}
    for ref in select.fields or ():
        if ref.relationship is None:
            value = record.get(ref.name)
            if ref.fspec.type == "base64" and value is not None:
                base = f"/services/data/v{version}/sobjects/{select.spec.name}"
                value = f"{base}/{record['Id']}/{ref.name}"
            out[ref.name] = value
            continue
        relation_name = str(ref.relationship.relationship_name)
        target = org.find(str(record.get(ref.relationship.name) or ""))
        if target is None:
            out[relation_name] = None
            continue
        nested = out.get(relation_name) or {
            "attributes": org.attributes(target[0], target[1]["Id"], version)
        }
        nested[ref.name] = target[1].get(ref.name)
        out[relation_name] = nested
    return out


def _run(org: Org, select: Select) -> list[Record]:
    rows = [r for r in org.store[select.spec.name].values() if _matches(org, r, select.where)]
    for ordering in reversed(select.order):  # stable sorts, least significant key first

        def key(record: Record, ordering: Ordering = ordering) -> tuple[int, Any]:
            return _sort_key(org, record, ordering)

        rows.sort(key=key, reverse=ordering.descending)
    rows = rows[select.offset :]
    if select.limit is not None:
        rows = rows[: select.limit]
    return rows


def _check_content_document_link(select: Select) -> None:
    """The documented implementation restriction on querying ContentDocumentLink."""
    if select.spec.name != "ContentDocumentLink":
        return
    where = select.where
    terms = where.items if isinstance(where, BoolOp) and where.op == "AND" else (where,)
    for term in terms:
        if (
            isinstance(term, Comparison)
            and term.field.relationship is None
            and term.field.name in {"ContentDocumentId", "LinkedEntityId"}
            and term.op in {"=", "IN"}
        ):
            return
    raise ApiError.of(
        400,
        "MALFORMED_QUERY",
        "Implementation restriction: ContentDocumentLink requires a filter by a single Id on"
        " ContentDocumentId or LinkedEntityId using the equals operator or multiple Id's using"
        " the IN operator.",
    )


def run_soql(org: Org, query: str, version: str) -> dict[str, Any]:
    """Execute a SOQL query; the ``GET query?q=`` response body."""
    try:
        select = _Parser(org, tokenize(query)).parse_query()
    except _FieldError as exc:
        raise _query_error(query, exc, "INVALID_FIELD") from None
    except _Syntax as exc:
        raise _query_error(query, exc) from None
    _check_content_document_link(select)
    rows = _run(org, select)
    if select.fields is None:
        return {"totalSize": len(rows), "done": True, "records": []}
    return {
        "totalSize": len(rows),
        "done": True,
        "records": [_render(org, select, r, version) for r in rows],
    }


# ---------------------------------------------------------------- SOSL


@dataclass(frozen=True, slots=True)
class _SearchWord:
    text: str  # lower-cased; may hold * and ? wildcards
    phrase: bool
    negated: bool = False


def _parse_search_term(search: str, start: int) -> tuple[list[list[_SearchWord]], int]:
    """The term inside the braces as OR-groups of AND-ed words, and the index after '}'."""
    words: list[tuple[str, bool]] = []
    current = ""
    in_phrase = False
    pos = start
    while True:
        if pos >= len(search):
            raise _search_error("missing '}' at the end of the search term")
        char = search[pos]
        if char == "\\":
            if pos + 1 >= len(search):
                raise _search_error("the search term ends in an unfinished escape sequence")
            current += search[pos + 1]
            pos += 2
            continue
        if char == "}" and not in_phrase:
            break
        if char == '"':
            if in_phrase:
                words.append((current, True))
                current = ""
            elif current:
                words.append((current, False))
                current = ""
            in_phrase = not in_phrase
        elif char.isspace() and not in_phrase:
            if current:
                words.append((current, False))
            current = ""
        elif char in _SOSL_RESERVED and char not in "*?":
            raise _search_error(
                f"search term contains the reserved character '{char}' unescaped; escape it"
                " with a backslash"
            )
        else:
            current += char
        pos += 1
    if in_phrase:
        raise _search_error("unterminated quoted phrase in the search term")
    if current:
        words.append((current, False))
    return _group_words(words), pos + 1


def _group_words(words: list[tuple[str, bool]]) -> list[list[_SearchWord]]:
    groups: list[list[_SearchWord]] = [[]]
    negate = False
    for text, phrase in words:
        upper = text.upper()
        if not phrase and upper == "OR":
            groups.append([])
            continue
        if not phrase and upper == "AND":
            continue
        if not phrase and upper == "NOT":
            negate = True
            continue
        groups[-1].append(_SearchWord(text.lower(), phrase, negate))
        negate = False
    groups = [g for g in groups if g]
    significant = "".join(w.text for g in groups for w in g).replace("*", "").replace("?", "")
    if len(significant) < 2:
        raise _search_error("search term must be longer than one character")
    return groups


def _search_error(message: str) -> ApiError:
    return ApiError.of(400, "MALFORMED_SEARCH", message)


_NAME_FIELDS = {"Name", "FirstName", "LastName", "Company", "Title"}


def _word_matches(fspec: FieldSpec, value: str, word: _SearchWord) -> bool:
    if fspec.type == "phone":
        key = phone_key(word.text)
        return bool(key) and phone_key(value) == key
    lowered = value.lower()
    if word.phrase:
        return re.search(rf"(?<!\w){re.escape(word.text)}(?!\w)", lowered) is not None
    candidates = {lowered, *re.findall(r"[\w@.'+-]+", lowered), *re.findall(r"\w+", lowered)}
    if "*" in word.text or "?" in word.text:
        return any(fnmatch.fnmatchcase(c, word.text) for c in candidates)
    return word.text in candidates


def _searched_fields(spec: SObjectSpec, scope: str) -> list[FieldSpec]:
    fields = [f for f in spec.fields if f.is_text and not f.is_long_text and f.type != "picklist"]
    if scope == "PHONE":
        return [f for f in fields if f.type == "phone"]
    if scope == "EMAIL":
        return [f for f in fields if f.type == "email"]
    if scope == "NAME":
        return [f for f in fields if f.name in _NAME_FIELDS or f.name_field]
    return fields


def _record_found(record: Record, fields: list[FieldSpec], groups: list[list[_SearchWord]]) -> bool:
    values = [(f, str(record[f.name])) for f in fields if record.get(f.name) is not None]
    phones = {phone_key(v) for f, v in values if f.type == "phone"}

    def hit(word: _SearchWord) -> bool:
        found = any(_word_matches(f, v, word) for f, v in values)
        return not found if word.negated else found

    def whole_number(group: list[_SearchWord]) -> bool:
        # A number typed with spaces ("(415) 555-0100") is one phone number, not two words.
        key = phone_key("".join(w.text for w in group if not w.negated))
        return len(group) > 1 and bool(key) and key in phones

    return any(whole_number(group) or all(hit(w) for w in group) for group in groups)


def run_sosl(org: Org, search: str, version: str) -> dict[str, Any]:
    """Execute a SOSL search; the ``GET search?q=`` response body."""
    head = re.match(r"\s*FIND\s*\{", search, re.IGNORECASE)
    if head is None:
        raise _search_error("No search term found. The search term must be enclosed in braces.")
    groups, rest_start = _parse_search_term(search, head.end())
    try:
        parser = _Parser(org, tokenize(search[rest_start:], rest_start))
        scope, selects, limit = _parse_search_tail(org, parser)
    except _FieldError as exc:
        raise _query_error(search, exc, "INVALID_FIELD") from None
    except _Syntax as exc:
        raise _query_error(search, exc, "MALFORMED_SEARCH") from None
    found: list[Record] = []
    for select in selects:
        fields = _searched_fields(select.spec, scope)
        hits = {
            r["Id"]
            for r in org.store[select.spec.name].values()
            if org.searchable_now(r) and _record_found(r, fields, groups)
        }
        rows = _run(org, Select(select.spec, select.fields, select.where, select.order, None))
        chosen = [r for r in rows if r["Id"] in hits]
        if select.limit is not None:
            chosen = chosen[: select.limit]
        found.extend(_render(org, select, r, version) for r in chosen)
    if limit is not None:
        found = found[:limit]
    return {"searchRecords": found}


def _parse_search_tail(org: Org, parser: _Parser) -> tuple[str, list[Select], int | None]:
    scope = "ALL"
    if parser.current.keyword("IN"):
        parser.advance()
        scope = parser.expect_keyword("ALL", "NAME", "EMAIL", "PHONE", "SIDEBAR").text.upper()
        parser.expect_keyword("FIELDS")
    selects: list[Select] = []
    if parser.current.keyword("RETURNING"):
        parser.advance()
        selects.append(_parse_returning(parser))
        while parser.at_op(","):
            parser.advance()
            selects.append(_parse_returning(parser))
    else:
        for spec in org.schema.values():
            if spec.searchable:
                id_field = spec.field("Id")
                assert id_field is not None
                selects.append(Select(spec, (FieldRef("Id", id_field),)))
    limit = None
    if parser.current.keyword("LIMIT"):
        parser.advance()
        limit = parser.parse_count()
    if parser.current.kind != "eof":
        raise _Syntax(parser.current)
    return scope, selects, limit


def _parse_returning(parser: _Parser) -> Select:
    name_token = parser.current
    spec = parser.parse_sobject()
    if not spec.searchable:
        raise _Syntax(name_token, f"entity type {spec.name} does not support search")
    id_field = spec.field("Id")
    assert id_field is not None
    if not parser.at_op("("):
        return Select(spec, (FieldRef("Id", id_field),))
    parser.advance()
    names = parser.parse_field_names()
    if names is None:
        raise _Syntax(parser.current)
    fields = tuple(parser.resolve(spec, t) for t in names)
    select = parser.parse_tail(spec, fields, allow_offset=False)
    parser.expect_op(")")
    return select

"""Labelling rules: `--rules FILE` gives a label to readings that have none (standard library only).

One rule a line, `LABEL: EXPR`; the first rule whose expression holds gives the label; the last
line may be `LABEL: else`. Blank lines and lines starting with `#` are ignored.

    EXPR    := or
    or      := and ('or' and)*
    and     := not ('and' not)*
    not     := 'not' not | compare
    compare := operand (('<' | '<=' | '>' | '>=' | '==' | '!=') operand)?
    operand := NUMBER | '-' NUMBER | STRING | 'true' | 'false' | FIELD | '(' or ')'

NUMBER is a decimal number (`12`, `4.5`, `1e3`); STRING is quoted with "…" or '…' (backslash escapes
`\\"`, `\\'`, `\\\\`); FIELD is a field name, dotted for nesting (`climate.temp_c`), or any name in
backquotes (`` `air temp` ``). Numbers compare as numbers, strings as strings; `==`/`!=` between a
number and a string is simply unequal, ordering them is an error. A bare operand is true or false
only when it is a boolean (`door_open and temp > 5`).

A parse error is reported as FILE:LINE:COL: message. Never uses eval().
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from .errors import bad_input

KEYWORDS = {"and", "or", "not", "else", "true", "false"}
COMPARISONS = {"<", "<=", ">", ">=", "==", "!="}
_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<name>[A-Za-z_][A-Za-z0-9_-]*(?:\.[A-Za-z0-9_-]+)*)
  | (?P<quoted>`[^`]*`)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
  | (?P<op><=|>=|==|!=|<|>|\(|\)|-)
""", re.VERBOSE)


@dataclass
class Token:
    kind: str      # number, name (keyword), field, qfield (backquoted), string, op, end
    text: str
    col: int       # 1-based column in the line


class Node:
    """An expression node; `col` is where it starts, for evaluation errors."""

    def __init__(self, kind, col, *args):
        self.kind = kind        # const, field, cmp, and, or, not
        self.col = col
        self.args = args


@dataclass
class Rule:
    label: str       # the route's label, as written in the route
    expr: Node       # None for `else`
    line: int


class RuleEvalError(Exception):
    """An expression cannot be evaluated on a reading (missing field, wrong type)."""


def _unescape(s):
    return re.sub(r"\\(.)", r"\1", s[1:-1])


def _tokenize(text, where):
    out, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            ch = text[pos]
            hint = " (use == to compare)" if ch == "=" else ""
            if ch in "\"'`":
                raise bad_input(f"{where(pos)}: unterminated {ch}…{ch}")
            raise bad_input(f"{where(pos)}: unexpected character {ch!r}{hint}")
        kind = m.lastgroup
        if kind == "space":
            pass
        elif kind == "quoted":
            name = m.group()[1:-1]
            if not name:
                raise bad_input(f"{where(pos)}: empty field name ``")
            out.append(Token("qfield", name, pos + 1))
        elif kind == "name":
            word = m.group()
            out.append(Token("name" if word in KEYWORDS else "field", word, pos + 1))
        elif kind == "string":
            out.append(Token("string", _unescape(m.group()), pos + 1))
        else:
            out.append(Token(kind, m.group(), pos + 1))
        pos = m.end()
    out.append(Token("end", "", len(text) + 1))
    return out


class _Parser:
    def __init__(self, tokens, where):
        self.t = tokens
        self.i = 0
        self.where = where          # where(col0) -> "FILE:LINE:COL"

    def peek(self):
        return self.t[self.i]

    def take(self):
        tok = self.t[self.i]
        self.i += 1
        return tok

    def fail(self, tok, msg):
        raise bad_input(f"{self.where(tok.col - 1)}: {msg}")

    def describe(self, tok):
        return "the end of the line" if tok.kind == "end" else repr(tok.text)

    def parse(self):
        if self.peek().kind == "end":
            self.fail(self.peek(), "missing expression after ':' (write an expression or `else`)")
        e = self.or_()
        tok = self.peek()
        if tok.kind != "end":
            if tok.kind == "op" and tok.text in COMPARISONS:
                self.fail(tok, "a comparison cannot be chained; write `a < x and x < b`")
            self.fail(tok, f"expected `and`, `or` or the end of the line, found {self.describe(tok)}")
        return e

    def or_(self):
        return self.chain("or", self.and_)

    def and_(self):
        return self.chain("and", self.not_)

    def chain(self, word, operand):
        """operand (word operand)*, left-associative."""
        left = operand()
        while self.peek().kind == "name" and self.peek().text == word:
            self.take()
            left = Node(word, left.col, left, operand())
        return left

    def not_(self):
        tok = self.peek()
        if tok.kind == "name" and tok.text == "not":
            self.take()
            return Node("not", tok.col, self.not_())
        return self.compare()

    def compare(self):
        left = self.operand()
        tok = self.peek()
        if tok.kind == "op" and tok.text in COMPARISONS:
            self.take()
            right = self.operand()
            return Node("cmp", left.col, tok.text, left, right, tok.col)
        return left

    def operand(self):
        tok = self.take()
        if tok.kind == "number":
            return Node("const", tok.col, self.number(tok))
        if tok.kind == "op" and tok.text == "-":
            nxt = self.take()
            if nxt.kind != "number":
                self.fail(nxt, f"expected a number after '-', found {self.describe(nxt)}")
            return Node("const", tok.col, -self.number(nxt))
        if tok.kind == "string":
            return Node("const", tok.col, tok.text)
        if tok.kind == "field":
            return Node("field", tok.col, tok.text, tuple(tok.text.split(".")))
        if tok.kind == "qfield":
            return Node("field", tok.col, tok.text, (tok.text,))
        if tok.kind == "name" and tok.text in ("true", "false"):
            return Node("const", tok.col, tok.text == "true")
        if tok.kind == "op" and tok.text == "(":
            e = self.or_()
            close = self.take()
            if not (close.kind == "op" and close.text == ")"):
                self.fail(close, f"expected ')' to close the '(' at column {tok.col}, "
                                 f"found {self.describe(close)}")
            return e
        if tok.kind == "name" and tok.text == "else":
            self.fail(tok, "`else` stands alone after the label (`LABEL: else`)")
        if tok.kind == "name":
            self.fail(tok, f"expected a field, number or string, found the keyword {tok.text!r} "
                           "(a field with that name is written in backquotes)")
        self.fail(tok, f"expected a field, number or string, found {self.describe(tok)}")


    def number(self, tok):
        x = float(tok.text)
        if not math.isfinite(x):
            self.fail(tok, f"number out of range: {tok.text}")
        return int(tok.text) if tok.text.isdigit() else x


class RuleSet:
    """Parsed rules. `label_of(reading)` → the route label, or None when no rule matches."""

    def __init__(self, path, rules):
        self.path = path
        self.rules = rules

    @property
    def has_else(self):
        return bool(self.rules) and self.rules[-1].expr is None

    def label_of(self, reading):
        for r in self.rules:
            if r.expr is None or _truth(r.expr, reading, self.path, r.line):
                return r.label
        return None


def parse_rules(text, path, route_labels):
    """Parses rules text; labels are matched to `route_labels` after trimming whitespace."""
    by_trim = {l.strip(): l for l in route_labels}
    rules = []
    else_line = None
    for n, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        indent = len(line) - len(line.lstrip())

        def where(col0, n=n):
            return f"{path}:{n}:{col0 + 1}"

        colon = line.find(":")
        if colon < 0:
            raise bad_input(f"{where(indent)}: expected `LABEL: EXPR` (no ':' on this line)")
        label = line[:colon].strip()
        if not label:
            raise bad_input(f"{where(indent)}: missing label before ':'")
        if label not in by_trim:
            raise bad_input(f"{where(indent)}: label {label!r} is not one of the route's labels "
                            f"({', '.join(by_trim)})")
        if else_line is not None:
            raise bad_input(f"{where(indent)}: no rule can follow `else` (line {else_line}); "
                            "`LABEL: else` must be the last rule")
        rest = line[colon + 1:]
        if rest.strip() == "else":
            else_line = n
            rules.append(Rule(by_trim[label], None, n))
            continue
        tokens = _tokenize(rest, lambda c, w=where: w(colon + 1 + c))
        for t in tokens:                      # columns in the line, not after the ':'
            t.col += colon + 1
        expr = _Parser(tokens, where).parse()
        rules.append(Rule(by_trim[label], expr, n))
    if not rules:
        raise bad_input(f"{path}: no rules (lines `LABEL: EXPR`, the last may be `LABEL: else`)")
    return RuleSet(path, rules)


def load_rules(path, route_labels):
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise bad_input(f"cannot read the rules file {path}: {e}")
    return parse_rules(text, path, route_labels)


# ------------------------------------------------------------------------------------ evaluation

def _kind(v):
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "string"
    if v is None:
        return "null"
    return "object" if isinstance(v, dict) else "array"


def _value(node, reading, path, line):
    if node.kind == "const":
        return node.args[0]
    if node.kind == "field":
        name, parts = node.args
        v = reading
        for p in parts:
            if not isinstance(v, dict) or p not in v:
                raise RuleEvalError(f"{path}:{line}:{node.col}: the reading has no field '{name}'")
            v = v[p]
        return v
    return _truth(node, reading, path, line)


def _truth(node, reading, path, line):
    k = node.kind
    if k == "and":
        return _truth(node.args[0], reading, path, line) and _truth(node.args[1], reading, path, line)
    if k == "or":
        return _truth(node.args[0], reading, path, line) or _truth(node.args[1], reading, path, line)
    if k == "not":
        return not _truth(node.args[0], reading, path, line)
    if k == "cmp":
        op, a, b, col = node.args
        x, y = _value(a, reading, path, line), _value(b, reading, path, line)
        kx, ky = _kind(x), _kind(y)
        if op in ("==", "!="):
            same = kx == ky and x == y
            return same if op == "==" else not same
        if kx != ky or kx not in ("number", "string"):
            raise RuleEvalError(f"{path}:{line}:{col}: cannot order a {kx} and a {ky} with {op} "
                                f"({x!r} {op} {y!r})")
        return {"<": x < y, "<=": x <= y, ">": x > y, ">=": x >= y}[op]
    v = _value(node, reading, path, line)
    if not isinstance(v, bool):
        raise RuleEvalError(f"{path}:{line}:{node.col}: {v!r} is a {_kind(v)}, not true or false; "
                            "compare it (e.g. `x > 0`, `x == \"on\"`)")
    return v

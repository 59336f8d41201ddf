"""Labelled readings from JSON Lines or CSV (standard library only).

JSON Lines: one object a line, `{"reading": {...}, "label": "...", "topic": "..."}`; `topic` is
optional, `label` too when labels come from --rules or --teacher; other keys are ignored. For an
`input: text` route the reading is a JSON string (the payload text).

CSV (UTF-8, a header line): a `label` column, an optional `topic` column; every other column is a
field of the reading, a dotted name (`climate.temp_c`) a nested one. Cells that are numbers become
numbers; empty cells are absent fields.

Every problem is collected with its FILE:LINE and reported together (up to MAX_REPORTED).
"""

from __future__ import annotations

import csv
import json
import math
import re
from dataclasses import dataclass
from typing import Optional

from .errors import bad_input

MAX_REPORTED = 20
_INT = re.compile(r"[+-]?\d+")
_FLOAT = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|[+-]?(?:nan|inf|infinity)", re.I)


@dataclass
class Record:
    where: str                 # FILE:LINE, for messages
    reading: object            # a dict (json/plugin routes) or a str (text routes)
    label: Optional[str]       # as written in the data (None when absent)
    topic: Optional[str]


class Problems:
    """Collects FILE:LINE messages; `check()` raises them together as one bad-input Failure."""

    def __init__(self, what):
        self.what = what
        self.items = []
        self.count = 0

    def add(self, msg):
        self.count += 1
        if len(self.items) < MAX_REPORTED:
            self.items.append(msg)

    def check(self):
        if self.count:
            more = f"\n… and {self.count - len(self.items)} more" if self.count > len(self.items) else ""
            raise bad_input(f"{self.what}: {self.count} problem{'s' if self.count > 1 else ''}:\n  "
                            + "\n  ".join(self.items) + more)


def _non_finite(v, path=""):
    """The dotted path of the first non-finite number in v, or None."""
    if isinstance(v, float) and not math.isfinite(v):
        return path or "(the value)"
    if isinstance(v, dict):
        for k, x in v.items():
            p = _non_finite(x, f"{path}.{k}" if path else k)
            if p:
                return p
    if isinstance(v, list):
        for i, x in enumerate(v):
            p = _non_finite(x, f"{path}[{i}]")
            if p:
                return p
    return None


def _reject_constant(name):
    raise ValueError(f"{name} is not a JSON number (non-finite numbers are not allowed)")


def load(path, text_route=False):
    """Records of a .csv or JSON Lines file; raises bad input with every problem found."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise bad_input(f"cannot read the data file {path}: {e}")
    if path.lower().endswith(".csv"):
        if text_route:
            raise bad_input(f"{path}: an `input: text` route needs JSON Lines data "
                            '({"reading": "the payload text", "label": "…"})')
        return _load_csv(path, text)
    return _load_jsonl(path, text, text_route)


def _load_jsonl(path, text, text_route):
    probs = Problems(path)
    out = []
    for n, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        where = f"{path}:{n}"
        try:
            obj = json.loads(line, parse_constant=_reject_constant)
        except ValueError as e:
            probs.add(f"{where}: not a JSON object: {e}")
            continue
        if not isinstance(obj, dict):
            probs.add(f"{where}: expected an object {{\"reading\": …, \"label\": …}}, got "
                      f"{type(obj).__name__}")
            continue
        if "reading" not in obj:
            probs.add(f"{where}: no \"reading\" (keys: {', '.join(obj) or 'none'})")
            continue
        reading = obj["reading"]
        if text_route and not isinstance(reading, str):
            probs.add(f"{where}: \"reading\" must be a string (the payload of an `input: text` route)")
            continue
        if not text_route and not isinstance(reading, dict):
            probs.add(f"{where}: \"reading\" must be a JSON object, got {_json_type(reading)}")
            continue
        bad = _non_finite(reading)
        if bad:
            probs.add(f"{where}: field {bad} is not a finite number")
            continue
        label = obj.get("label")
        if label is not None and not isinstance(label, str):
            probs.add(f"{where}: \"label\" must be a string, got {_json_type(label)}")
            continue
        topic = obj.get("topic")
        if topic is not None and not isinstance(topic, str):
            probs.add(f"{where}: \"topic\" must be a string, got {_json_type(topic)}")
            continue
        out.append(Record(where, reading, label, topic))
    probs.check()
    if not out:
        raise bad_input(f"{path}: no readings")
    return out


def _json_type(v):
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
            type(None): "null"}.get(type(v), "a number")


def _cell(s):
    """A CSV cell as a number when it is one, else the text (None: empty)."""
    if s == "":
        return None
    t = s.strip()
    if _INT.fullmatch(t):
        return int(t)
    if _FLOAT.fullmatch(t):
        return float(t)
    return s


def _load_csv(path, text):
    probs = Problems(path)
    rows = csv.reader(text.splitlines(keepends=True))
    try:
        header = next(rows)
    except StopIteration:
        raise bad_input(f"{path}: empty file (expected a header line with a `label` column)")
    except csv.Error as e:
        raise bad_input(f"{path}:1: {e}")
    names = [h.strip() for h in header]
    for i, h in enumerate(names):
        if not h:
            probs.add(f"{path}:1: column {i + 1} has no name")
        elif names.index(h) != i:
            probs.add(f"{path}:1: column '{h}' appears twice")
        elif any(p == "" for p in h.split(".")):
            probs.add(f"{path}:1: column '{h}': empty part in a dotted name")
        elif any(o.startswith(h + ".") for o in names):
            probs.add(f"{path}:1: column '{h}' is a value and also holds the nested fields "
                      f"'{h}.…' of another column")
    probs.check()
    out = []
    line = 1
    while True:
        try:
            row = next(rows)
        except StopIteration:
            break
        except csv.Error as e:
            probs.add(f"{path}:{rows.line_num}: {e}")
            break
        start, line = line + 1, rows.line_num
        where = f"{path}:{start}"
        if not any(c.strip() for c in row):
            continue
        if len(row) != len(names):
            probs.add(f"{where}: {len(row)} cells, the header has {len(names)}")
            continue
        reading, label, topic, ok = {}, None, None, True
        for name, raw in zip(names, row):
            if name == "label":
                label = raw if raw != "" else None
                continue
            if name == "topic":
                topic = raw if raw != "" else None
                continue
            v = _cell(raw)
            if v is None:
                continue
            if isinstance(v, float) and not math.isfinite(v):
                probs.add(f"{where}: column '{name}': {raw.strip()!r} is not a finite number")
                ok = False
                continue
            parts = name.split(".")
            d = reading
            for p in parts[:-1]:
                d = d.setdefault(p, {})
            d[parts[-1]] = v
        if ok:
            out.append(Record(where, reading, label, topic))
    probs.check()
    if not out:
        raise bad_input(f"{path}: no readings")
    return out

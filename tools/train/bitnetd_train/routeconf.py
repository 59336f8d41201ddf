"""The route to train for, read from a bitnetd configuration (PyYAML).

Only what the tool needs is read here: route names, task, labels, min_confidence, input, prompt and
the route's own text for DIR/route.yaml. The prompt itself is never rendered here: `bitnetd prompt`
does that with the daemon's own loader (conf.d merge, ${VAR} expansion, number formatting). Like the
daemon, the file beside it `conf.d/*.yaml` (name order) adds routes. Scalars are read as written
(YAML 1.1's `yes`/`on` stay text, as in bitnetd), and ${NAME} / ${NAME:-default} / $${ are expanded.
"""

from __future__ import annotations

import glob
import json
import os
import re
from dataclasses import dataclass, field

from .errors import bad_input


class NeedsYAML(Exception):
    """PyYAML is not importable in this interpreter (the venv has it)."""


def _yaml():
    try:
        import yaml
    except ImportError:
        raise NeedsYAML()
    return yaml


_VAR = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand(s, where):
    def one(m):
        if m.group(0) == "$${":
            return "${"
        name, default = m.group(1), m.group(2)
        if name in os.environ:
            return os.environ[name]
        if default is not None:
            return default
        raise bad_input(f"{where}: ${{{name}}} is not set (set it or write ${{{name}:-default}})")
    return _VAR.sub(one, s)


@dataclass
class Route:
    name: str
    task: str
    labels: list
    min_confidence: float
    input: str
    prompt: str
    topic: str
    window: bool
    file: str                        # the file that defines it
    node: object = field(repr=False)  # its yaml MappingNode (marks for route.yaml)

    @property
    def where(self):
        return f"{self.file}:{self.node.start_mark.line + 1}:{self.node.start_mark.column + 1}"


def _files(path):
    d = os.path.join(os.path.dirname(os.path.abspath(path)), "conf.d")
    return [path] + sorted(glob.glob(os.path.join(d, "*.yaml")))


def load_routes(path):
    """Every route of the configuration (main file, then conf.d), as Route."""
    yaml = _yaml()
    routes = []
    for f in _files(path):
        try:
            with open(f, encoding="utf-8") as fh:
                text = fh.read()
        except (OSError, UnicodeDecodeError) as e:
            raise bad_input(f"cannot read the configuration {f}: {e}")
        try:
            root = yaml.compose(text, Loader=yaml.BaseLoader)
        except yaml.YAMLError as e:
            raise bad_input(f"{f}: not valid YAML: {e} (check it with `bitnetd check-config --config {path}`)")
        if root is None:
            continue
        if not isinstance(root, yaml.MappingNode):
            raise bad_input(f"{f}: expected a mapping at the top")
        for k, v in root.value:
            if k.value != "routes":
                continue
            if not isinstance(v, yaml.SequenceNode):
                raise bad_input(f"{f}:{v.start_mark.line + 1}: routes: expected a list")
            for node in v.value:
                routes.append(_route(yaml, f, node))
    return routes


def _route(yaml, f, node):
    pos = f"{f}:{node.start_mark.line + 1}:{node.start_mark.column + 1}"
    if not isinstance(node, yaml.MappingNode):
        raise bad_input(f"{pos}: a route must be a mapping")
    d = yaml.load(yaml.serialize(node), Loader=yaml.BaseLoader)

    def text(key, default=None):
        v = d.get(key, default)
        if v is not None and not isinstance(v, str):
            raise bad_input(f"{pos}: {key}: expected text")
        return expand(v, pos) if v is not None else None

    labels = d.get("labels") or []
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        raise bad_input(f"{pos}: labels: expected a list of text")
    try:
        mc = float(text("min_confidence", "0"))
    except ValueError:
        raise bad_input(f"{pos}: min_confidence: expected a number")
    return Route(name=text("name", ""), task=text("task", "decide"),
                 labels=[expand(x, pos) for x in labels], min_confidence=mc,
                 input=text("input", "json"), prompt=text("prompt", ""), topic=text("topic", ""),
                 window="window" in d, file=f, node=node)


def select(path, name=None):
    """The route to train: `name`, or the configuration's only decide route."""
    routes = load_routes(path)
    decide = [r for r in routes if r.task == "decide"]
    if name is None:
        if len(decide) == 1:
            return decide[0]
        if not decide:
            raise bad_input(f"{path} has no decide route (`task: decide` with `labels:`); "
                            "bitnetd-train trains decide routes only")
        raise bad_input(f"{path} has {len(decide)} decide routes ({', '.join(r.name for r in decide)}); "
                        "choose one with --route-name")
    for r in routes:
        if r.name == name:
            if r.task != "decide":
                raise bad_input(f"{r.where}: route '{name}' is a {r.task} route; bitnetd-train "
                                "trains decide routes only")
            return r
    raise bad_input(f"{path} has no route '{name}' (routes: {', '.join(r.name for r in routes) or 'none'})")


def check_route(r):
    """Problems bitnetd-train cannot work around, before any data is read."""
    if r.window or "{{window" in r.prompt.replace(" ", ""):
        raise bad_input(f"{r.where}: route '{r.name}' decides on a reading window "
                        "({{window.…}}); bitnetd-train cannot build such prompts from single readings yet")
    if len(r.labels) < 2:
        raise bad_input(f"{r.where}: route '{r.name}' needs at least 2 labels")
    trimmed = [l.strip() for l in r.labels]
    for l, t in zip(r.labels, trimmed):
        if not t:
            raise bad_input(f"{r.where}: route '{r.name}' has an empty label")
    dup = {t for t in trimmed if trimmed.count(t) > 1}
    if dup:
        raise bad_input(f"{r.where}: labels {sorted(dup)} appear twice (after trimming spaces)")


def route_yaml(r, model_path):
    """The route's own text, ready to paste under `routes:`, with `model:` set to model_path."""
    with open(r.file, encoding="utf-8") as f:
        lines = f.read().split("\n")
    start, end = r.node.start_mark, r.node.end_mark
    # A block mapping ends where the next token starts (often the next route's "- ").
    last = end.line if lines[end.line][:end.column].strip() else end.line - 1
    model = "model: " + json.dumps(model_path)
    if r.node.flow_style:
        whole = "\n".join(lines)
        text = whole[start.index:end.index]
        for k, v in r.node.value:
            if k.value == "model":
                a, b = v.start_mark.index - start.index, v.end_mark.index - start.index
                return "- " + text[:a] + json.dumps(model_path) + text[b:] + "\n"
        return "- " + text.rstrip()[:-1].rstrip() + ", " + model + "}\n"
    # Block style: drop an existing `model:` entry, trailing blank and comment lines, re-indent.
    skip = set()
    for k, v in r.node.value:
        if k.value == "model":
            skip.update(range(k.start_mark.line, max(v.end_mark.line, k.start_mark.line) + 1))
    col = start.column
    body = []
    for i in range(start.line, last + 1):
        if i in skip:
            continue
        s = lines[i] if i > start.line else " " * col + lines[i][col:]
        indent = len(s) - len(s.lstrip())
        body.append(s[col:] if indent >= col else s.lstrip())
    while body and (not body[-1].strip() or body[-1].lstrip().startswith("#")):
        body.pop()
    body.append(model)
    return "\n".join(("- " if i == 0 else "  ") + s if s.strip() else "" for i, s in enumerate(body)) + "\n"

"""Stage 1 of bitnetd-train (standard library and PyYAML only, no torch): read and check the input,
give every reading its label (from the data, --rules or --teacher), render every prompt through
`bitnetd prompt`, split off the held-out readings and write DIR/checkpoints/dataset.json, which
stage 2 trains on. Every problem of the input is found here, before the training environment is
needed.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from collections import Counter

from . import bitnetd, readings, routeconf
from .errors import bad_input
from .rules import RuleEvalError, load_rules

MIN_PER_LABEL = 20       # readings of each label, at the least (≥ 2 of them are held out)
HOLDOUT = 0.10           # share of the readings held out for evaluation…
MAX_HOLDOUT = 1000       # …but at most this many (each costs a `bitnetd decide`)
FORMAT = 1


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _fields(reading, prefix=""):
    if not isinstance(reading, dict):
        return ["(text)"]
    out = []
    for k, v in reading.items():
        out += _fields(v, f"{prefix}{k}.") if isinstance(v, dict) else [prefix + k]
    return out


def _match_labels(recs, route):
    """Each record's label as the route writes it (equal after trimming whitespace)."""
    by_trim = {l.strip(): l for l in route.labels}
    probs = readings.Problems("labels")
    out = []
    for r in recs:
        if r.label is None:
            probs.add(f"{r.where}: no \"label\" (give one, or label the readings with --rules or --teacher)")
            continue
        lab = by_trim.get(r.label.strip())
        if lab is None:
            probs.add(f"{r.where}: label {r.label!r} is not one of the route's labels "
                      f"({', '.join(by_trim)})")
            continue
        out.append(lab)
    probs.check()
    return out


def _rule_labels(recs, rules):
    probs = readings.Problems(f"rules {rules.path}")
    out = []
    for r in recs:
        try:
            lab = rules.label_of(r.reading if isinstance(r.reading, dict) else {"payload": r.reading})
        except RuleEvalError as e:
            probs.add(f"{e} (reading at {r.where})")
            continue
        if lab is None:
            probs.add(f"{r.where}: no rule matches this reading (end the rules with `LABEL: else`)")
            continue
        out.append(lab)
    probs.check()
    return out


def _teacher_labels(binary, teacher, prompts, route, cache_path, workers, log):
    """bitnetd decide on the teacher for each prompt; answers are cached in cache_path (one JSON
    line per prompt), so an interrupted run does not ask the teacher again. None = unsure."""
    st = os.stat(teacher)
    ident = {"teacher": os.path.abspath(teacher), "size": st.st_size, "mtime": st.st_mtime,
             "labels": route.labels, "min_confidence": route.min_confidence}
    cache = {}
    if os.path.exists(cache_path):
        with open(cache_path, encoding="utf-8") as f:
            lines = f.read().splitlines()
        if lines and json.loads(lines[0]) == ident:
            for line in lines[1:]:
                try:
                    e = json.loads(line)
                    cache[e["prompt"]] = e["label"]
                except (ValueError, KeyError):
                    pass            # a line cut short by an interruption
    todo = sorted({p for p in prompts if p not in cache})
    if todo:
        log(f"labelling {len(todo)} readings with the teacher {teacher} (bitnetd decide)")
    with open(cache_path, "w", encoding="utf-8") as f:
        f.write(json.dumps(ident) + "\n")
        for p, l in cache.items():
            f.write(json.dumps({"prompt": p, "label": l}) + "\n")
        f.flush()
        done = [0]

        def record(i, answer):
            lab = answer["label"]
            lab = None if lab == "unsure" and "unsure" not in route.labels else lab
            cache[todo[i]] = lab
            f.write(json.dumps({"prompt": todo[i], "label": lab}) + "\n")
            f.flush()
            done[0] += 1
            if done[0] % 500 == 0:
                log(f"  teacher: {done[0]}/{len(todo)}")
        bitnetd.decide_many(binary, teacher, todo, route.labels, route.min_confidence, workers,
                            on_done=record)
    return [cache[p] for p in prompts]


def split(items, seed):
    """(train, test): about HOLDOUT of each label (≥ 2, at most MAX_HOLDOUT in all) held out;
    readings with the same prompt stay on the same side, so no held-out prompt is trained on."""
    counts = Counter(e["label"] for e in items)
    frac = min(HOLDOUT, MAX_HOLDOUT / len(items))
    quota = {l: max(2, round(frac * c)) for l, c in counts.items()}
    groups = {}
    for e in items:
        groups.setdefault(e["prompt"], []).append(e)
    order = sorted(groups)
    random.Random(seed).shuffle(order)
    taken = Counter()
    train, test = [], []
    for p in order:
        g = groups[p]
        lab = g[0]["label"]
        if taken[lab] < quota[lab]:
            taken[lab] += len(g)
            test += g
        else:
            train += g
    return train, test


def prepare(args, binary, log):
    """Everything stage 2 needs, checked: returns (dataset dict, route)."""
    route = routeconf.select(args.route, args.route_name)
    routeconf.check_route(route)
    text_route = route.input == "text"
    rules = load_rules(args.rules, route.labels) if args.rules else None
    if args.teacher and not os.path.isfile(args.teacher):
        raise bad_input(f"--teacher {args.teacher}: no such file")
    recs = readings.load(args.data, text_route)
    held = readings.load(args.heldout, text_route) if args.heldout else []
    bitnetd.check_binary(binary)
    prompts = bitnetd.render_prompts(binary, args.route, route.name, recs + held)
    held_prompts = prompts[len(recs):]
    prompts = prompts[:len(recs)]
    held_labels = _match_labels(held, route) if held else []
    dropped = 0
    if rules:
        labels = _rule_labels(recs, rules)
        source = f"rules {os.path.abspath(args.rules)}"
    elif args.teacher:
        os.makedirs(os.path.join(args.out, "checkpoints"), exist_ok=True)
        labels = _teacher_labels(binary, args.teacher, prompts, route,
                                 os.path.join(args.out, "checkpoints", "teacher-labels.jsonl"),
                                 args.threads, log)
        dropped = sum(l is None for l in labels)
        source = f"teacher {os.path.abspath(args.teacher)} (bitnetd decide)"
    else:
        labels = _match_labels(recs, route)
        source = "the data"
    items = [{"where": r.where, "prompt": p, "label": l}
             for r, p, l in zip(recs, prompts, labels) if l is not None]
    counts = Counter(e["label"] for e in items)
    few = [f"{l!r}: {counts.get(l, 0)}" for l in route.labels if counts.get(l, 0) < MIN_PER_LABEL]
    if few:
        extra = f" ({dropped} readings the teacher was unsure about were left out)" if dropped else ""
        raise bad_input(f"too few readings per label: {', '.join(few)}; each of the route's labels "
                        f"needs at least {MIN_PER_LABEL}{extra}. Add readings of those labels, or "
                        "remove labels the data never shows from the route")
    train, test = split(items, args.seed)
    fields = Counter(f for r in recs for f in _fields(r.reading))
    ds = {
        "format": FORMAT,
        "seed": args.seed,
        "route": {"name": route.name, "labels": route.labels, "min_confidence": route.min_confidence,
                  "prompt": route.prompt, "input": route.input, "config": os.path.abspath(args.route)},
        "data": {"path": os.path.abspath(args.data), "sha256": sha256(args.data),
                 "readings": len(recs), "labels_from": source, "teacher_unsure": dropped,
                 "fields": dict(sorted(fields.items())), "counts": dict(counts)},
        "train": train,
        "test": test,
        "heldout": [{"where": r.where, "prompt": p, "label": l}
                    for r, p, l in zip(held, held_prompts, held_labels)],
        "heldout_path": os.path.abspath(args.heldout) if args.heldout else None,
    }
    return ds, route


def fingerprint(ds):
    """What the checkpoints depend on: the training items, the seed and the route's labels."""
    h = hashlib.sha256(json.dumps([ds["format"], ds["seed"], ds["route"]["labels"],
                                   [(e["prompt"], e["label"]) for e in ds["train"]]]).encode())
    return h.hexdigest()

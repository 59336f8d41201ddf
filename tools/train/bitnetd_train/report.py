"""Evaluation of the exported model and the files of DIR: eval.json, README.md (the model card),
route.yaml and SHA256SUMS.

Accuracy is measured twice on the same held-out readings: by PyTorch (the training graph, F16 and
int8 emulated) and by `bitnetd decide` on DIR/model.gguf with the route's labels and min_confidence,
exactly as the daemon decides; `unsure` is a wrong answer. Agreement is the share of readings where
both give the same answer.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from collections import Counter

from . import bitnetd, training
from .dataset import sha256

UNSURE = "unsure"


def _answer(labels, probs, min_confidence):
    best = max(range(len(labels)), key=probs.__getitem__)
    return UNSURE if probs[best] < min_confidence else labels[best]


def predictions(model, tk, items, route, binary, gguf, workers, log):
    """Per item: torch answer and probabilities, bitnetd answer, probabilities and latency."""
    labels, mc = route["labels"], route["min_confidence"]
    prompts = [e["prompt"] for e in items]
    t = time.time()
    tp = training.label_probabilities(model, tk, prompts, labels)
    log(f"PyTorch: {len(items)} held-out readings in {time.time() - t:.0f} s")
    t = time.time()
    bp = bitnetd.decide_many(binary, gguf, prompts, labels, mc, workers)
    log(f"bitnetd decide: {len(items)} held-out readings in {time.time() - t:.0f} s")
    out = []
    for e, p, b in zip(items, tp, bp):
        bprobs = [b["probabilities"][l] for l in labels]
        out.append({"where": e["where"], "expected": e["label"],
                    "torch": _answer(labels, p, mc), "bitnetd": b["label"],
                    "torch_p": p, "bitnetd_p": bprobs, "latency_ms": b.get("latency_ms")})
    return out


def summarize(preds, labels):
    n = len(preds)
    counts = Counter(p["expected"] for p in preds)
    majority = counts.most_common(1)[0] if counts else ("", 0)
    conf = {l: Counter() for l in labels}
    for p in preds:
        conf.setdefault(p["expected"], Counter())[p["bitnetd"]] += 1
    lat = [p["latency_ms"] for p in preds if p["latency_ms"] is not None]
    return {
        "n": n,
        "accuracy_bitnetd": sum(p["bitnetd"] == p["expected"] for p in preds) / n,
        "accuracy_torch": sum(p["torch"] == p["expected"] for p in preds) / n,
        "agreement": sum(p["bitnetd"] == p["torch"] for p in preds) / n,
        "max_probability_difference": max(max(abs(a - b) for a, b in zip(p["torch_p"], p["bitnetd_p"]))
                                          for p in preds),
        "unsure_bitnetd": sum(p["bitnetd"] == UNSURE for p in preds),
        "majority_baseline": {"label": majority[0], "accuracy": majority[1] / n},
        "confusion_bitnetd": {l: dict(c) for l, c in conf.items()},
        "latency_ms_p50": statistics.median(lat) if lat else None,
        "latency_ms_p95": sorted(lat)[int(0.95 * (len(lat) - 1))] if lat else None,
    }


def _pct(x):
    return f"{100 * x:.2f} %"


def _confusion_table(s, labels):
    cols = labels + ([UNSURE] if any(UNSURE in r for r in s["confusion_bitnetd"].values()) else [])
    rows = ["| expected ↓ / bitnetd → | " + " | ".join(cols) + " |",
            "|---|" + "---|" * len(cols)]
    for l in labels:
        r = s["confusion_bitnetd"].get(l, {})
        rows.append(f"| {l} | " + " | ".join(str(r.get(c, 0)) for c in cols) + " |")
    return "\n".join(rows)


def _accuracy_rows(name, s):
    return (f"| {name} | {s['n']} | {_pct(s['accuracy_bitnetd'])} | {_pct(s['accuracy_torch'])} | "
            f"{_pct(s['agreement'])} | {_pct(s['majority_baseline']['accuracy'])} "
            f"({s['majority_baseline']['label']}) | {s['unsure_bitnetd']} |")


def model_card(ds, ev, files, rel):
    """DIR/README.md."""
    r, d = ds["route"], ds["data"]
    labels = r["labels"]
    tr = ev["training"]
    counts_train = Counter(e["label"] for e in ds["train"])
    counts_test = Counter(e["label"] for e in ds["test"])
    sets = [("held-out split", ev["split"])] + ([("--heldout file", ev["heldout"])] if ev.get("heldout") else [])
    label_rows = "\n".join(f"| {l!r} | {d['counts'].get(l, 0)} | {counts_train.get(l, 0)} | "
                           f"{counts_test.get(l, 0)} |" for l in labels)
    fields = ", ".join(f"`{k}`" + (f" ({v})" if v != d["readings"] else "") for k, v in d["fields"].items())
    m = ev["model"]
    lat = ev["split"]["latency_ms_p50"]
    return f"""# bitnetd-train model for route `{r['name']}`

A BitNet b1.58 model (the 2B4T graph: ternary weights, int8 activations, trained with
quantization-aware training) made by `tools/train/bitnetd-train` to answer one decide route. It
knows nothing but this route's prompt.

| | |
|---|---|
| file | `model.gguf`, {m['bytes']:,} bytes, SHA-256 `{m['sha256']}` (`SHA256SUMS`) |
| architecture | {m['config']['layers']} layers, d = {m['config']['d']}, {m['config']['heads']} query / {m['config']['kv_heads']} KV heads, FFN {m['config']['ff']} (ReLU²), context {m['config']['context']} (size {m['size']}) |
| parameters | {m['parameters']:,} |
| vocabulary | {m['vocab']} tokens (byte-level BPE trained on the prompts; digits are single tokens) |
| route | `{r['name']}` in `{rel(r['config'])}` |
| seed | {ds['seed']} |
| training | {tr['steps']} steps of {tr['batch']} ({tr['epochs']:.1f} epochs), {tr['minutes']:.1f} min, {tr['threads']} torch thread{'s' if tr['threads'] != 1 else ''}{'' if tr['complete'] else ' — stopped early by --max-minutes'} |

## Data

`{rel(d['path'])}` (SHA-256 `{d['sha256'][:16]}…`): {d['readings']} readings; labels from {d['labels_from']}{f"; {d['teacher_unsure']} readings the teacher was unsure about left out" if d['teacher_unsure'] else ''}.
Fields: {fields}.

| label | readings | trained on | held out |
|---|---|---|---|
{label_rows}

Template (rendered by `bitnetd prompt`, so training saw exactly the daemon's prompts):

```
{r['prompt']}
```

Labels: {', '.join(f'`{l}`' for l in labels)}; min_confidence {r['min_confidence']:g} (below it the answer
is `unsure`, which counts as wrong below).

## Accuracy

| readings | n | bitnetd (`decide`) | PyTorch | agreement | majority class | unsure |
|---|---|---|---|---|---|---|
{chr(10).join(_accuracy_rows(n, s) for n, s in sets)}

The held-out split is {len(ds['test'])} readings of the data (about {100 * len(ds['test']) / max(1, d['readings']):.0f} %, each label
represented) whose prompts never occur in training; their labels are the data's own.
{chr(10).join(f"Confusion on the {n}, through bitnetd:{chr(10)}{chr(10)}{_confusion_table(s, labels)}{chr(10)}" for n, s in sets)}
Decision latency (`bitnetd decide`, 1 thread, whole prompt computed, no prefix cache): p50
{f'{lat:.2f}' if lat is not None else '?'} ms over the held-out readings; the daemon's prefix cache makes it shorter.

## Use

Paste `route.yaml` under `routes:` of your bitnetd configuration (it is the route with
`model:` set to this file) and restart bitnetd. `eval.json` holds every figure above.

## Files

{chr(10).join(f'- `{f}`' for f in files)}
"""


def write_all(out, ds, ev, route_text):
    """eval.json, README.md, route.yaml, SHA256SUMS (last, over the others)."""
    def rel(p):
        try:
            r = os.path.relpath(p, out)
        except ValueError:
            return p
        return p if r.startswith("../../..") else r
    with open(os.path.join(out, "eval.json"), "w") as f:
        json.dump(ev, f, indent=2)
    with open(os.path.join(out, "route.yaml"), "w") as f:
        f.write(route_text)
    files = ["model.gguf", "README.md", "route.yaml", "eval.json", "SHA256SUMS", "checkpoints/", "train.log"]
    with open(os.path.join(out, "README.md"), "w") as f:
        f.write(model_card(ds, ev, files, rel))
    sums = [f"{sha256(os.path.join(out, n))}  {n}" for n in ("model.gguf", "route.yaml", "README.md", "eval.json")]
    with open(os.path.join(out, "SHA256SUMS"), "w") as f:
        f.write("\n".join(sums) + "\n")

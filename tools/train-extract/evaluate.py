"""Held-out evaluation of the extraction demo model: (a) `bitnetd generate --schema … --temperature 0`
on the exported GGUF, one process per request (the figure the model card reports), (b) the same
constrained greedy decoding in PyTorch fake-quant (the training graph), to show both agree.
Writes models/demo/extract-heldout.jsonl (requests, exact prompts, expected objects, bitnetd's
output) and work/eval.json (accuracy per family and per field, agreement, latency)."""

from __future__ import annotations

import collections
import json
import os
import re
import statistics
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import torch

import data
import train as TR
from bitnetd_train import tok, training

TIMING = re.compile(r"prompt: (\d+) tokens in ([\d.]+) ms.*?generated (\d+) tokens \((\d+) forced; "
                    r"(\d+) model passes\) in ([\d.]+) ms")
MAX_TOKENS = 64


def generate(binary, gguf, schema_path, prompt):
    """One `bitnetd generate --schema` at temperature 0, 1 thread → (text, timing dict)."""
    cmd = [binary, "generate", "--model", gguf, "--threads", "1", "--prompt", prompt,
           "--schema", schema_path, "--max-tokens", str(MAX_TOKENS), "--temperature", "0"]
    p = None
    for attempt in range(30):           # the binary may briefly be replaced by a rebuild
        t = time.time()
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        except OSError:                 # ETXTBSY / ENOENT while it is being written
            time.sleep(2)
            continue
        wall = (time.time() - t) * 1000
        if p.returncode == 0:
            break
        time.sleep(2)
    else:
        why = f"exit {p.returncode}:\n{p.stderr[-2000:]}" if p else "the binary cannot be executed"
        raise RuntimeError(f"bitnetd generate failed ({why})\nprompt: {prompt!r}")
    assert p.stdout.endswith("\n") and p.stdout.count("\n") == 1, repr(p.stdout)
    m = TIMING.search(p.stderr)
    timing = {"wall_ms": wall}
    if m:
        timing.update(prompt_tokens=int(m[1]), prompt_ms=float(m[2]), generated=int(m[3]),
                      forced=int(m[4]), passes=int(m[5]), generate_ms=float(m[6]))
    return p.stdout[:-1], timing


def valid(v):
    """The schema's checks (the pytest validates with jsonschema as well)."""
    return (isinstance(v, dict) and list(v) == ["house", "action", "level"]
            and type(v["house"]) is int and 1 <= v["house"] <= 9
            and v["action"] in data.ACTIONS
            and type(v["level"]) is int and 0 <= v["level"] <= 100 and v["level"] % 10 == 0)


# ------------------------------------------------------------- the same decoding in PyTorch

# The schema's language is finite: every valid output text, compact, keys in schema order.
OUTPUTS = [data.answer({"house": h, "action": a, "level": lv})
           for h in range(1, 10) for a in data.ACTIONS for lv in range(0, 101, 10)]


def _forced(rests):
    """Bytes every completion starts with (what bitnetd feeds without sampling)."""
    return os.path.commonprefix(rests)


@torch.no_grad()
def torch_constrained(model, tk, prompt, vocab):
    """Greedy decoding under the schema as bitnetd does it, on the PyTorch graph: bytes that every
    valid completion shares are tokenized and fed; otherwise the best token among those that keep
    the text a prefix of a valid output is taken. Returns the JSON text."""
    ids = [tk.token_to_id(tok.BOS)] + tk.encode(prompt).ids
    out = ""
    while True:
        rests = [v[len(out):] for v in OUTPUTS if v.startswith(out)]
        if rests == [""]:
            return out
        f = _forced(rests)
        if f:
            ids += tk.encode(f).ids
            out += f
            continue
        prefixes = {r[:k] for r in rests for k in range(1, len(r) + 1)}
        allowed = [i for i, s in enumerate(vocab) if s in prefixes]
        logits = model(torch.tensor([ids]))[0, -1]
        best = max(allowed, key=lambda i: logits[i].item())
        ids.append(best)
        out += vocab[best]


# ------------------------------------------------------------------------------------ report

def run(binary, workers):
    torch.set_num_threads(1)
    tests = [json.loads(l) for l in open(TR.wpath("test.jsonl"))]
    gguf = os.path.join(TR.OUT_DIR, "extract.gguf")
    schema_path = os.path.join(TR.OUT_DIR, "extract-schema.json")
    prompts = [data.prompt(e["request"]) for e in tests]

    t0 = time.time()
    with ThreadPoolExecutor(max_workers=max(1, workers)) as ex:
        got = list(ex.map(lambda p: generate(binary, gguf, schema_path, p), prompts))
    TR.log(f"bitnetd generate --schema on {len(tests)} held-out requests in {time.time() - t0:.0f} s "
           f"({workers} processes at a time, 1 thread each)")

    model, f = training.load_final(TR.wpath("final.pt"))
    tk, _, _ = tok.load(TR.wpath("tokenizer.json"))
    t0 = time.time()
    vocab = [tk.decode([i]) for i in range(tk.get_vocab_size())]
    tp = [torch_constrained(model, tk, p, vocab) for p in prompts]
    TR.log(f"PyTorch fake-quant constrained greedy on {len(tests)} requests in {time.time() - t0:.0f} s")

    rows = []
    for e, p, (text, timing), ttext in zip(tests, prompts, got, tp):
        v = json.loads(text)
        rows.append({"e": e, "prompt": p, "text": text, "value": v, "timing": timing,
                     "valid": valid(v), "exact": v == e["expected"], "torch": ttext})
    n = len(rows)
    by_family = collections.defaultdict(list)
    for r in rows:
        by_family[r["e"]["family"]].append(r["exact"])
    fields = {k: sum(r["value"].get(k) == r["e"]["expected"][k] for r in rows) / n
              for k in ("house", "action", "level")}
    eng = [r["timing"]["prompt_ms"] + r["timing"]["generate_ms"] for r in rows if "prompt_ms" in r["timing"]]
    walls = [r["timing"]["wall_ms"] for r in rows]
    rep = {
        "n": n,
        "exact_match_bitnetd": sum(r["exact"] for r in rows) / n,
        "exact_match_torch": sum(json.loads(r["torch"]) == r["e"]["expected"] for r in rows) / n,
        "agreement_torch_bitnetd": sum(r["torch"] == r["text"] for r in rows) / n,
        "valid": sum(r["valid"] for r in rows) / n,
        "per_field": fields,
        "per_family": {k: {"n": len(v), "exact": sum(v) / len(v)} for k, v in sorted(by_family.items())},
        "latency_ms": {
            "engine_p50": statistics.median(eng) if eng else None,
            "engine_p95": sorted(eng)[int(0.95 * len(eng))] if eng else None,
            "prompt_p50": statistics.median(r["timing"]["prompt_ms"] for r in rows if "prompt_ms" in r["timing"]),
            "generate_p50": statistics.median(r["timing"]["generate_ms"] for r in rows if "generate_ms" in r["timing"]),
            "process_wall_p50": statistics.median(walls),
        },
        "tokens_p50": {k: statistics.median(r["timing"][k] for r in rows if k in r["timing"])
                       for k in ("prompt_tokens", "generated", "forced", "passes")},
        "training": {"steps": f["steps"], "minutes": f["seconds"] / 60},
        "gguf_bytes": os.path.getsize(gguf),
        "errors": [{"request": r["e"]["request"], "expected": r["e"]["expected"], "got": r["value"]}
                   for r in rows if not r["exact"]],
    }
    with open(TR.wpath("eval.json"), "w") as fo:
        json.dump(rep, fo, indent=2)
    TR.log("eval: " + json.dumps({k: v for k, v in rep.items() if k != "errors"}))
    with open(os.path.join(TR.OUT_DIR, "extract-heldout.jsonl"), "w") as fo:
        for r in rows:
            fo.write(json.dumps({
                "request": r["e"]["request"], "prompt": r["prompt"], "expected": r["e"]["expected"],
                "template": r["e"]["template"], "bitnetd": r["text"],
            }) + "\n")
    return rep

"""Held-out evaluation of the demo model: (a) PyTorch fake-quant (the training graph), (b) bitnetd
itself through `bitnetd decide --json` on the exported GGUF. Writes models/demo/heldout.jsonl
(readings, exact prompts, expected labels, the training tool's predictions and probabilities) and
work/eval.json (accuracies, agreement, latency)."""

from __future__ import annotations

import json
import os
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import torch

import data
import train as TR
from bitnetd_train import bitnetd, tok, training


def torch_predictions(model, tk, tests):
    """(label, probabilities) per reading, with bitnetd decide's semantics."""
    labels = [data.TASKS[e["task"]]["labels"] for e in tests]
    probs = training.label_probabilities(model, tk, [e["prompt"] for e in tests],
                                         [[" " + l for l in ls] for ls in labels])
    return [(ls[max(range(len(p)), key=p.__getitem__)], p) for ls, p in zip(labels, probs)]


def run(binary, threads):
    torch.set_num_threads(threads)
    model, f = TR.load_final()
    tk, _, _ = tok.load(TR.wpath("tokenizer.json"))
    tests = [json.loads(l) for l in open(TR.wpath("test.jsonl"))]
    t0 = time.time()
    tp = torch_predictions(model, tk, tests)
    TR.log(f"fake-quant predictions for {len(tests)} held-out readings in {time.time() - t0:.0f} s")
    gguf = os.path.join(TR.OUT_DIR, "demo.gguf")

    def one(e):
        t = time.time()
        j = bitnetd.decide(binary, gguf, e["prompt"], [" " + l for l in data.TASKS[e["task"]]["labels"]])
        return j, (time.time() - t) * 1000
    t0 = time.time()
    with ThreadPoolExecutor(max_workers=2) as ex:
        bp = list(ex.map(one, tests))
    TR.log(f"bitnetd decisions for {len(tests)} held-out readings in {time.time() - t0:.0f} s")
    rep = {"n": len(tests), "per_task": {}}
    for task in list(data.TASKS) + ["all"]:
        idx = [i for i, e in enumerate(tests) if task == "all" or e["task"] == task]
        acc_t = sum(tp[i][0] == tests[i]["rule_label"] for i in idx) / len(idx)
        acc_b = sum(bp[i][0]["label"].strip() == tests[i]["rule_label"] for i in idx) / len(idx)
        agree = sum(bp[i][0]["label"].strip() == tp[i][0] for i in idx) / len(idx)
        maxdiff = max(max(abs(a - b) for a, b in zip(tp[i][1], bp_probs(bp[i][0], tests[i])))
                      for i in idx)
        rep["per_task"][task] = {"n": len(idx), "acc_torch": acc_t, "acc_bitnetd": acc_b,
                                 "agreement": agree, "max_prob_diff": maxdiff}
    lat = [b[0].get("latency_ms", b[0].get("elapsed_ms")) for b in bp]
    lat = [x for x in lat if x is not None]
    walls = [b[1] for b in bp]
    rep["latency_ms"] = {"decide_median": statistics.median(lat) if lat else None,
                         "decide_p95": sorted(lat)[int(0.95 * len(lat))] if lat else None,
                         "process_wall_median": statistics.median(walls)}
    rep["training"] = {"steps": f["steps"], "minutes": f["seconds"] / 60}
    with open(TR.wpath("eval.json"), "w") as fo:
        json.dump(rep, fo, indent=2)
    TR.log("eval: " + json.dumps(rep))
    # heldout.jsonl: the first N per task.
    count = {t: 0 for t in data.TASKS}
    with open(os.path.join(TR.OUT_DIR, "heldout.jsonl"), "w") as fo:
        for e, (lab, pr) in zip(tests, tp):
            if count[e["task"]] >= TR.N_HELDOUT_FILE_PER_TASK:
                continue
            count[e["task"]] += 1
            labels = data.TASKS[e["task"]]["labels"]
            fo.write(json.dumps({
                "task": e["task"], "fields": e["fields"], "prompt": e["prompt"],
                "labels": [" " + l for l in labels], "expected": e["rule_label"],
                "predicted": lab, "probabilities": {l: round(p, 6) for l, p in zip(labels, pr)},
            }) + "\n")
    return rep


def bp_probs(j, e):
    probs = j["probabilities"]
    labels = data.TASKS[e["task"]]["labels"]
    if isinstance(probs, dict):
        return [probs[" " + l] for l in labels]
    return [x["probability"] if isinstance(x, dict) else x for x in probs]

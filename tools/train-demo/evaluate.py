"""Held-out evaluation of the demo model: (a) PyTorch fake-quant (the training graph), (b) bitnetd
itself through `bitnetd decide --json` on the exported GGUF. Writes models/demo/heldout.jsonl
(readings, exact prompts, expected labels, the training tool's predictions and probabilities) and
work/eval.json (accuracies, agreement, latency)."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import torch

import data
import tok
import train as TR


def torch_predictions(model, tk, tests):
    """decide semantics: score(label) = Σ log p(label tokens | prompt), softmax over the labels."""
    bos = tk.token_to_id(tok.BOS)
    res = []
    with torch.no_grad():
        for e in tests:
            labels = [" " + l for l in data.TASKS[e["task"]]["labels"]]
            p = tk.encode(e["prompt"]).ids
            seqs = [[bos] + tk.encode(e["prompt"] + l).ids for l in labels]
            T = max(len(s) for s in seqs)
            ids = torch.zeros(len(seqs), T, dtype=torch.long)
            for i, s in enumerate(seqs):
                ids[i, :len(s)] = torch.tensor(s)
            lp = torch.log_softmax(model(ids).double(), -1)
            scores = []
            for i, s in enumerate(seqs):
                c = 0
                while c < len(p) and s[1 + c] == p[c]:
                    c += 1
                start = 1 + c
                scores.append(sum(lp[i, t - 1, s[t]].item() for t in range(start, len(s))))
            pr = torch.softmax(torch.tensor(scores), 0).tolist()
            best = max(range(len(labels)), key=lambda i: pr[i])
            res.append((data.TASKS[e["task"]]["labels"][best], pr))
    return res


def bitnetd_decide(binary, model_path, prompt, labels, threads=1):
    cmd = [binary, "decide", "--model", model_path, "--threads", str(threads), "--prompt", prompt,
           "--labels", ",".join(" " + l for l in labels), "--json"]
    t0 = time.time()
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    wall = (time.time() - t0) * 1000
    if p.returncode != 0:
        raise RuntimeError(f"{cmd}: exit {p.returncode}\n{p.stderr}")
    j = json.loads(p.stdout)
    return j, wall


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
        return bitnetd_decide(binary, gguf, e["prompt"], data.TASKS[e["task"]]["labels"])
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

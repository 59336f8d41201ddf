"""Stage 2 of bitnetd-train (torch): vocabulary, model size and steps, resumable training, export.

Everything lives in DIR/checkpoints/: dataset.json (stage 1), tokenizer.json, plan.json (size and
steps, fixed at the first run so a resumed run continues the same schedule), ckpt.pt (the training
state) and final.pt (the trained weights).
"""

from __future__ import annotations

import json
import os
import re
import time

import torch

from . import export_gguf, tok, training
from .bitnetd import continuation
from .model import BitNet, Config

VOCAB = 1024           # at most; a template's text rarely needs more than a few hundred merges
BATCH = 32
# Model sizes, smallest first (BitNet b1.58 2B4T graph: GQA with half as many KV heads, head 32).
# d and ff are multiples of 128: an I2_S row holds whole 128-value blocks. L is the demo model's
# size. A middle size (d = 256, 2 layers) learnt worse than S on 3,600 and on 15,000 readings.
SIZES = {
    "S": dict(d=128, layers=2, heads=4, kv_heads=2, ff=256),
    "L": dict(d=256, layers=4, heads=8, kv_heads=4, ff=512),
}
assert all(s["d"] % 128 == 0 and s["ff"] % 128 == 0 for s in SIZES.values())
EPOCHS = 12              # passes over the training readings wanted…
MIN_STEPS = 600          # …but at least this many steps (small data) …
MAX_STEPS = 4000         # …and at most this many (large data)
BUDGET_SHARE = 0.85      # of --max-minutes for the steps; the rest: tokenizer, export, evaluation
LR = dict(lr=3e-3, min_lr=2e-4, weight_decay=0.01, prompt_weight=0.0, ckpt_minutes=2.0,
          eval_every=0)


def digits_apart(text):
    """The text the vocabulary is trained on: every run of digits as one digit, so that no merge
    joins digits and numbers reach the model digit by digit. A value the data never showed is then
    read from digits it knows (whole-number tokens would each have to be seen, with their label)."""
    return re.sub(r"[0-9]+", "0", text)


def build_tokenizer(ds, path, log):
    if os.path.exists(path):
        return tok.load(path)
    texts = [digits_apart(e["prompt"] + continuation(e["prompt"], e["label"]))
             for e in ds["train"]]
    texts += [digits_apart(continuation("", l)) for l in ds["route"]["labels"]]
    tk, tokens, merges = tok.train_tokenizer(texts, VOCAB)
    assert not any(len(t) > 1 and any(c.isdigit() for c in t) for t in tokens)
    tok.save(path, tokens, merges)
    log(f"vocabulary: {len(tokens)} tokens")
    return tk, tokens, merges


def choose_size(n):
    """By the number of training readings (documented in tools/train/README.md)."""
    return "S" if n < 50000 else "L"


def _seconds_per_step(cfg, enc):
    """Time of one training step of this size on this machine (a throw-away model, 3 steps)."""
    model = BitNet(Config(**cfg))
    opt = training.make_optimizer(model, dict(LR))
    items = (enc * (BATCH // max(1, len(enc)) + 1))[:BATCH]
    ids, w = training.make_batch(items)
    times = []
    for _ in range(3):
        t = time.time()
        loss = training.loss_fn(model, ids, w)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        times.append(time.time() - t)
    return min(times[1:])


def make_plan(ds, enc, vocab, max_minutes, log):
    """Model size and steps from the data and the time budget: EPOCHS passes over the readings,
    clamped to MIN_STEPS…MAX_STEPS; if that does not fit BUDGET_SHARE of --max-minutes at the
    size chosen by choose_size, a smaller size, then fewer steps."""
    n = len(enc)
    want = min(MAX_STEPS, max(MIN_STEPS, -(-EPOCHS * n // BATCH)))
    budget = max_minutes * 60 * BUDGET_SHARE
    # Room for readings longer than any trained on (bitnetd refuses prompts beyond the context).
    context = max(512, 1 << (2 * max(len(x) for x, _ in enc)).bit_length())
    order = list(SIZES)
    for i in range(order.index(choose_size(n)), -1, -1):
        cfg = dict(SIZES[order[i]], vocab=vocab, context=min(context, 4096))
        sps = _seconds_per_step(cfg, enc)
        fits = int(budget / sps)
        if fits >= want:
            break
        if i > 0:
            log(f"size {order[i]} needs {want * sps / 60:.1f} min for {want} steps; trying a smaller one")
    steps = min(want, fits)
    size = order[i]
    if steps < want:
        log(f"--max-minutes {max_minutes:g} allows {steps} of the {want} steps wanted: "
            "accuracy may suffer; give more minutes for the full schedule")
    steps = max(steps, 50)
    plan = {"size": size, "model": cfg, "steps": steps, "batch": BATCH,
            "warmup": min(100, max(10, steps // 10)), "seconds_per_step": sps,
            "estimated_minutes": steps * sps / 60, **LR}
    return plan


def run(ds, ckdir, max_minutes, log):
    """Trains (or resumes); returns (model, tokens, merges, plan, training result)."""
    tk, tokens, merges = build_tokenizer(ds, os.path.join(ckdir, "tokenizer.json"), log)
    enc = [training.encode_example(tk, e["prompt"], e["label"]) for e in ds["train"]]
    plan_path = os.path.join(ckdir, "plan.json")
    final_path = os.path.join(ckdir, "final.pt")
    if os.path.exists(plan_path):
        with open(plan_path) as f:
            plan = json.load(f)
    else:
        torch.manual_seed(ds["seed"])
        plan = make_plan(ds, enc, len(tokens), max_minutes, log)
        with open(plan_path, "w") as f:
            json.dump(plan, f, indent=2)
    if os.path.exists(final_path):
        model, f = training.load_final(final_path)
        log(f"already trained ({f['steps']} steps); exporting and evaluating again")
        return model, tokens, merges, plan, {"steps": f["steps"], "seconds": f["seconds"],
                                             "complete": f.get("complete", True)}
    torch.manual_seed(ds["seed"])
    model = BitNet(Config(**plan["model"]))
    n_params = sum(p.numel() for p in model.parameters())
    log(f"model {plan['size']} {plan['model']}: {n_params:,} parameters; {plan['steps']} steps of "
        f"{plan['batch']} over {len(enc)} readings (≈ {plan['estimated_minutes']:.1f} min)")
    res = training.train(model, enc, plan, os.path.join(ckdir, "ckpt.pt"), log, ds["seed"],
                         deadline_s=max_minutes * 60)
    training.save_final(final_path, model, res["steps"], res["seconds"], complete=res["complete"])
    model.eval()
    return model, tokens, merges, plan, res


def export(model, tokens, merges, path, route_name):
    tmp = path + ".tmp"
    export_gguf.export(model, tokens, merges, tmp, name=f"bitnetd-train-{route_name}")
    os.replace(tmp, path)

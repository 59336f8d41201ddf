#!/usr/bin/env python3
"""Train the bitnetd demo model (BitNet b1.58, 2B4T architecture, a few million parameters) on the
synthetic sensor-decision corpus of data.py, export it as GGUF and evaluate it.

    python3 tools/train-demo/train.py all        # prepare → train → export → eval (resumable)
    python3 tools/train-demo/train.py prepare    # corpus + tokenizer + token ids   (work/)
    python3 tools/train-demo/train.py train      # resumes from work/ckpt.pt; log in work/train.log
    python3 tools/train-demo/train.py export     # → models/demo/demo.gguf
    python3 tools/train-demo/train.py eval       # fake-quant and bitnetd on the held-out split
                                                 # → models/demo/heldout.jsonl, work/eval.json

Run it in the background (`nohup … &`); it checkpoints every few minutes and continues where it
stopped. Never run in CI. CPU only.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import data  # noqa: E402
import tok  # noqa: E402
from model import BitNet, Config  # noqa: E402

SEED = 20261129
VOCAB = 1536
N_TRAIN_PER_TASK = 60000
N_TEST_PER_TASK = 400          # held-out split per task (never trained on)
N_HELDOUT_FILE_PER_TASK = 150  # of which this many per task go into models/demo/heldout.jsonl
MODEL = dict(d=256, layers=4, heads=8, kv_heads=4, ff=512, context=512)
TRAIN = dict(steps=2400, batch=32, lr=3e-3, min_lr=2e-4, warmup=100, weight_decay=0.01,
             prompt_weight=0.0, ckpt_minutes=3.0)

WORK = os.environ.get("BITNETD_TRAIN_WORK", os.path.join(HERE, "work"))
OUT_DIR = os.environ.get("BITNETD_DEMO_OUT", os.path.join(REPO, "models", "demo"))


def log(msg):
    line = time.strftime("%Y-%m-%d %H:%M:%S ") + msg
    print(line, flush=True)
    with open(os.path.join(WORK, "train.log"), "a") as f:
        f.write(line + "\n")


def wpath(name):
    return os.path.join(WORK, name)


# ----------------------------------------------------------------------------------- prepare

def encode_example(tk, e):
    """BOS + prompt + " label" + EOS; returns (ids, index of the first answer token)."""
    bos = tk.token_to_id(tok.BOS)
    eos = tk.token_to_id(tok.EOS)
    p = tk.encode(e["prompt"]).ids
    full = tk.encode(e["prompt"] + " " + e["label"]).ids
    assert full[:len(p)] == p, (e["prompt"], p, full)
    return [bos] + full + [eos], 1 + len(p)


def prepare():
    os.makedirs(WORK, exist_ok=True)
    if os.path.exists(wpath("data.pt")):
        return
    log("generating corpus (seed %d)" % SEED)
    train, test = data.make_corpus(SEED, N_TRAIN_PER_TASK, N_TEST_PER_TASK)
    with open(wpath("test.jsonl"), "w") as f:
        for e in test:
            f.write(json.dumps(e) + "\n")
    texts = [e["prompt"] + " " + e["label"] for e in train] + data.tokenizer_texts(SEED)
    tk, tokens, merges = tok.train_tokenizer(texts, VOCAB)
    tok.save(wpath("tokenizer.json"), tokens, merges)
    for task, spec in data.TASKS.items():
        for lab in spec["labels"]:
            ids = tk.encode(" " + lab).ids
            log(f"label {task}/{lab}: tokens {ids}")
    for task, spec in data.TASKS.items():
        f = [tk.encode(" " + lab).ids[0] for lab in spec["labels"]]
        assert len(set(f)) == len(f), f"labels of {task} share a first token"
    enc = [encode_example(tk, e) for e in train]
    tenc = [encode_example(tk, e) for e in test]
    torch.save({"train": enc, "test": tenc, "vocab": len(tokens)}, wpath("data.pt"))
    log(f"prepared: {len(enc)} training and {len(tenc)} held-out sequences, vocab {len(tokens)}, "
        f"max length {max(len(x) for x, _ in enc)}")


# ------------------------------------------------------------------------------------- train

def make_batch(items):
    T = max(len(x) for x, _ in items)
    ids = torch.zeros(len(items), T, dtype=torch.long)
    w = torch.zeros(len(items), T)        # weight of the target at position t (predicting ids[t])
    for i, (x, a) in enumerate(items):
        ids[i, :len(x)] = torch.tensor(x)
        w[i, 1:a] = TRAIN["prompt_weight"]
        w[i, a:len(x)] = 1.0
    return ids, w


def lr_at(step):
    if step < TRAIN["warmup"]:
        return TRAIN["lr"] * (step + 1) / TRAIN["warmup"]
    p = (step - TRAIN["warmup"]) / max(1, TRAIN["steps"] - TRAIN["warmup"])
    return TRAIN["min_lr"] + 0.5 * (TRAIN["lr"] - TRAIN["min_lr"]) * (1 + math.cos(math.pi * min(p, 1)))


def loss_fn(model, ids, w):
    inp, tgt, wt = ids[:, :-1], ids[:, 1:], w[:, 1:]
    sel = wt > 0
    logits = model(inp, need=sel)
    l = F.cross_entropy(logits, tgt[sel], reduction="none")
    return (l * wt[sel]).sum() / wt[sel].sum()


@torch.no_grad()
def answer_scores(model, items, labels_ids, batch=64):
    """For each (ids, answer_start): log-probs of each candidate first token at the answer position."""
    model.eval()
    out = []
    for i in range(0, len(items), batch):
        chunk = items[i:i + batch]
        T = max(a for _, a in chunk)
        ids = torch.zeros(len(chunk), T, dtype=torch.long)
        for j, (x, a) in enumerate(chunk):
            ids[j, :a] = torch.tensor(x[:a])
        need = torch.zeros(len(chunk), T, dtype=torch.bool)
        for j, (x, a) in enumerate(chunk):
            need[j, a - 1] = True
        lp = torch.log_softmax(model(ids, need=need).double(), -1)
        out.extend(lp[j] for j in range(len(chunk)))
    model.train()
    return out


def build_model(vocab):
    return BitNet(Config(vocab=vocab, **MODEL))


def train(threads):
    torch.set_num_threads(threads)
    d = torch.load(wpath("data.pt"))
    enc, vocab = d["train"], d["vocab"]
    torch.manual_seed(SEED)
    model = build_model(vocab)
    decay = [p for n, p in model.named_parameters() if p.dim() == 2]
    other = [p for n, p in model.named_parameters() if p.dim() != 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": TRAIN["weight_decay"]},
                             {"params": other, "weight_decay": 0.0}], lr=TRAIN["lr"],
                            betas=(0.9, 0.95))
    step, spent = 0, 0.0
    if os.path.exists(wpath("ckpt.pt")):
        ck = torch.load(wpath("ckpt.pt"))
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        step, spent = ck["step"], ck["seconds"]
        log(f"resumed at step {step} ({spent / 60:.1f} min trained)")
    else:
        n = sum(p.numel() for p in model.parameters())
        log(f"model {MODEL} vocab {vocab}: {n} parameters; train {TRAIN}")
    order_rng = random.Random(SEED)
    perm = list(range(len(enc)))
    order_rng.shuffle(perm)
    B = TRAIN["batch"]

    def save():
        tmp = wpath("ckpt.pt.tmp")
        torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step,
                    "seconds": spent + time.time() - t_start}, tmp)
        os.replace(tmp, wpath("ckpt.pt"))

    t_start = time.time()
    last_ckpt = time.time()
    ema = None
    while step < TRAIN["steps"]:
        k = (step * B) % len(perm)
        items = [enc[perm[(k + j) % len(perm)]] for j in range(B)]
        ids, w = make_batch(items)
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        loss = loss_fn(model, ids, w)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        ema = loss.item() if ema is None else 0.95 * ema + 0.05 * loss.item()
        if step % 20 == 0:
            el = spent + time.time() - t_start
            log(f"step {step}/{TRAIN['steps']} loss {ema:.4f} lr {lr_at(step):.2e} "
                f"{el / 60:.1f} min")
        if step % 200 == 0 or step == TRAIN["steps"]:
            acc = quick_eval(model, d["test"][:300])
            log(f"step {step}: held-out first-token accuracy (fake-quant, 300 readings) {acc:.3f}")
        if time.time() - last_ckpt > TRAIN["ckpt_minutes"] * 60:
            save()
            last_ckpt = time.time()
    save()
    torch.save({"model": model.state_dict(), "vocab": vocab, "config": MODEL,
                "seconds": spent + time.time() - t_start, "steps": step}, wpath("final.pt"))
    log(f"training done: {step} steps, {(spent + time.time() - t_start) / 60:.1f} min")


def quick_eval(model, items):
    tests = [json.loads(l) for l in open(wpath("test.jsonl"))][:len(items)]
    tk, _, _ = tok.load(wpath("tokenizer.json"))
    scores = answer_scores(model, items, None)
    ok = 0
    for e, lp in zip(tests, scores):
        labs = data.TASKS[e["task"]]["labels"]
        firsts = [tk.encode(" " + l).ids[0] for l in labs]
        ok += labs[int(torch.argmax(lp[firsts]))] == e["rule_label"]
    return ok / len(items)


# --------------------------------------------------------------------------- export and eval

def load_final():
    f = torch.load(wpath("final.pt"))
    model = build_model(f["vocab"])
    model.load_state_dict(f["model"])
    model.eval()
    return model, f


def export():
    import export_gguf
    model, f = load_final()
    _, tokens, merges = tok.load(wpath("tokenizer.json"))
    os.makedirs(OUT_DIR, exist_ok=True)
    out = os.path.join(OUT_DIR, "demo.gguf")
    export_gguf.export(model, tokens, merges, out)
    log(f"exported {out} ({os.path.getsize(out)} bytes)")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("step", choices=["all", "prepare", "train", "export", "eval"])
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    ap.add_argument("--bitnetd", default=os.environ.get("BITNETD_BIN",
                                                        os.path.join(REPO, ".build/release/bitnetd")))
    a = ap.parse_args()
    os.makedirs(WORK, exist_ok=True)
    if a.step in ("all", "prepare"):
        prepare()
    if a.step in ("all", "train"):
        train(a.threads)
    if a.step in ("all", "export"):
        export()
    if a.step in ("all", "eval"):
        import evaluate
        evaluate.run(a.bitnetd, a.threads)


if __name__ == "__main__":
    main()

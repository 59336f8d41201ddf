#!/usr/bin/env python3
"""Train the extraction demo model (BitNet b1.58, 2B4T architecture, a few million parameters) on
the greenhouse-request corpus of data.py, export it as GGUF and evaluate it through bitnetd.

    python3 tools/train-extract/train.py all        # prepare → train → export → eval (resumable)
    python3 tools/train-extract/train.py prepare    # corpus + tokenizer + token ids   (work/)
    python3 tools/train-extract/train.py train      # resumes from work/ckpt.pt; log in work/train.log
    python3 tools/train-extract/train.py export     # → models/demo/extract.gguf, extract-schema.json
    python3 tools/train-extract/train.py eval       # `bitnetd generate --schema` on the held-out split
                                                    # → models/demo/extract-heldout.jsonl, work/eval.json

Run it in the background (`nohup … &`); it checkpoints every few minutes and continues where it
stopped. Never run in CI. CPU only.
"""

from __future__ import annotations

import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(REPO, "tools", "train"))

import torch  # noqa: E402

import data  # noqa: E402
from bitnetd_train import demo_script, tok, training  # noqa: E402

SEED = 20261206
VOCAB = 1536
N_TRAIN = 120000
N_TEST = 400                   # held-out requests (held-out templates, never a training text)
MODEL = dict(d=256, layers=4, heads=8, kv_heads=4, ff=512, context=256)
TRAIN = dict(steps=3600, batch=32, lr=3e-3, min_lr=2e-4, warmup=100, weight_decay=0.01,
             prompt_weight=0.0, ckpt_minutes=3.0, eval_every=300)
NAME = "bitnetd-extract-demo"

WORK = os.environ.get("BITNETD_TRAIN_WORK", os.path.join(HERE, "work"))
OUT_DIR = os.environ.get("BITNETD_DEMO_OUT", os.path.join(REPO, "models", "demo"))


W = demo_script.WorkDir(WORK)
log, wpath = W.log, W.path


# ----------------------------------------------------------------------------------- prepare

def encode(tk, e):
    """BOS + prompt + answer JSON + EOS, and the index of the first answer token. The prompt and
    the answer are tokenized separately, as bitnetd does: it tokenizes the prompt, then feeds the
    schema's forced bytes (`{"house":`, `,"action":"`, …) tokenized on their own and lets the
    model pick the value tokens."""
    p = [tk.token_to_id(tok.BOS)] + tk.encode(data.prompt(e["request"])).ids
    a = tk.encode(data.answer(e["expected"])).ids + [tk.token_to_id(tok.EOS)]
    return p + a, len(p)


def check_vocabulary(tk):
    """Every value the model chooses is one token, so greedy choice = choice of the value."""
    for h in range(1, 10):
        assert len(tk.encode(str(h)).ids) == 1, h
    for lv in range(0, 101, 10):
        assert len(tk.encode(str(lv)).ids) == 1, f"level {lv} is not one token"
    for a in data.ACTIONS:
        ids = tk.encode(a).ids
        log(f"action {a}: tokens {ids}")
    log("answer tokens: " + " | ".join(tk.id_to_token(i) for i in
                                       tk.encode(data.answer({"house": 2, "action": "ventilate",
                                                              "level": 80})).ids))


def prepare():
    os.makedirs(WORK, exist_ok=True)
    if os.path.exists(wpath("data.pt")):
        return
    log("generating corpus (seed %d)" % SEED)
    train, test = data.make_corpus(SEED, N_TRAIN, N_TEST)
    with open(wpath("test.jsonl"), "w") as f:
        for e in test:
            f.write(json.dumps(e) + "\n")
    texts = [data.prompt(e["request"]) for e in train] + [data.answer(e["expected"]) for e in train]
    tk, tokens, merges = tok.train_tokenizer(texts + data.tokenizer_texts(), VOCAB)
    tok.save(wpath("tokenizer.json"), tokens, merges)
    check_vocabulary(tk)
    enc = [encode(tk, e) for e in train]
    tenc = [encode(tk, e) for e in test]
    torch.save({"train": enc, "test": tenc, "vocab": len(tokens)}, wpath("data.pt"))
    log(f"prepared: {len(enc)} training ({len({e['request'] for e in train})} distinct) and "
        f"{len(tenc)} held-out requests, vocab {len(tokens)}, "
        f"max length {max(len(x) for x, _ in enc + tenc)}")


# ------------------------------------------------------------------------------------- train

@torch.no_grad()
def teacher_forced_exact(model, items, batch=128):
    """Share of sequences whose every answer token is the model's arg-max given the gold prefix
    (no constraint: a lower bound of the constrained greedy exact match)."""
    was = model.training
    model.eval()
    ok = 0
    for c in range(0, len(items), batch):
        ids, w = training.make_batch(items[c:c + batch])
        logits = model(ids[:, :-1])
        pred = logits.argmax(-1)
        good = (pred == ids[:, 1:]) | (w[:, 1:] == 0)
        ok += int(good.all(dim=1).sum())
    if was:
        model.train()
    return ok / len(items)


def train(threads):
    def make_eval(d):
        def quick_eval(step, model):
            log(f"step {step}: held-out teacher-forced exact match (fake-quant, {len(d['test'])} requests) "
                f"{teacher_forced_exact(model, d['test']):.3f}")
        return quick_eval

    demo_script.train_step(W, threads, SEED, MODEL, TRAIN, make_eval)


# --------------------------------------------------------------------------- export and eval

def export():
    demo_script.export_step(W, os.path.join(OUT_DIR, "extract.gguf"), name=NAME)
    with open(os.path.join(OUT_DIR, "extract-schema.json"), "w") as fo:
        json.dump(data.SCHEMA, fo, indent=2)
        fo.write("\n")


def main():
    def evaluate(a):
        import evaluate
        evaluate.run(a.bitnetd, a.workers)

    def workers(ap):
        ap.add_argument("--workers", type=int, default=2,
                        help="eval: bitnetd processes at a time, one engine thread each (default 2)")

    demo_script.run_steps(__doc__, W, {
        "prepare": lambda a: prepare(),
        "train": lambda a: train(a.threads),
        "export": lambda a: export(),
        "eval": evaluate,
    }, default_threads=1, add_args=workers)


if __name__ == "__main__":
    main()

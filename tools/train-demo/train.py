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

SEED = 20261129
VOCAB = 1536
N_TRAIN_PER_TASK = 60000
N_TEST_PER_TASK = 400          # held-out split per task (never trained on)
N_HELDOUT_FILE_PER_TASK = 150  # of which this many per task go into models/demo/heldout.jsonl
MODEL = dict(d=256, layers=4, heads=8, kv_heads=4, ff=512, context=512)
TRAIN = dict(steps=2400, batch=32, lr=3e-3, min_lr=2e-4, warmup=100, weight_decay=0.01,
             prompt_weight=0.0, ckpt_minutes=3.0, eval_every=200)

WORK = os.environ.get("BITNETD_TRAIN_WORK", os.path.join(HERE, "work"))
OUT_DIR = os.environ.get("BITNETD_DEMO_OUT", os.path.join(REPO, "models", "demo"))


W = demo_script.WorkDir(WORK)
log, wpath = W.log, W.path


# ----------------------------------------------------------------------------------- prepare

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
    enc = [training.encode_example(tk, e["prompt"], e["label"]) for e in train]
    tenc = [training.encode_example(tk, e["prompt"], e["label"]) for e in test]
    torch.save({"train": enc, "test": tenc, "vocab": len(tokens)}, wpath("data.pt"))
    log(f"prepared: {len(enc)} training and {len(tenc)} held-out sequences, vocab {len(tokens)}, "
        f"max length {max(len(x) for x, _ in enc)}")


# ------------------------------------------------------------------------------------- train

def train(threads):
    def make_eval(_data):
        tests = [json.loads(l) for l in open(wpath("test.jsonl"))][:300]
        tk, _, _ = tok.load(wpath("tokenizer.json"))

        def quick_eval(step, model):
            probs = training.label_probabilities(
                model, tk, [e["prompt"] for e in tests],
                [[" " + l for l in data.TASKS[e["task"]]["labels"]] for e in tests])
            ok = sum(data.TASKS[e["task"]]["labels"][max(range(len(p)), key=p.__getitem__)] == e["rule_label"]
                     for e, p in zip(tests, probs))
            log(f"step {step}: held-out accuracy (fake-quant, {len(tests)} readings) {ok / len(tests):.3f}")
        return quick_eval

    demo_script.train_step(W, threads, SEED, MODEL, TRAIN, make_eval)


# --------------------------------------------------------------------------- export and eval

def load_final():
    return training.load_final(wpath("final.pt"))


def main():
    def evaluate(a):
        import evaluate
        evaluate.run(a.bitnetd, a.threads)

    demo_script.run_steps(__doc__, W, {
        "prepare": lambda a: prepare(),
        "train": lambda a: train(a.threads),
        "export": lambda a: demo_script.export_step(W, os.path.join(OUT_DIR, "demo.gguf")),
        "eval": evaluate,
    }, default_threads=2)


if __name__ == "__main__":
    main()

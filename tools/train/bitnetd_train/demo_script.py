"""What the bundled demo models' training scripts share (tools/train-demo/train.py for the decision
demo, tools/train-extract/train.py for the extraction demo): the work directory and its log, the
resumable train step, the GGUF export and the step runner (`all | prepare | train | export | eval`).
Each script keeps what differs: its corpus, tokenizer checks, held-out metric and evaluation."""

from __future__ import annotations

import argparse
import os
import time

import torch

from . import tok, training
from .model import BitNet, Config

REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", ".."))


class WorkDir:
    """The script's work directory (corpus, tokenizer, checkpoints) and its train.log."""

    def __init__(self, root):
        self.root = root

    def path(self, name):
        return os.path.join(self.root, name)

    def log(self, msg):
        line = time.strftime("%Y-%m-%d %H:%M:%S ") + msg
        print(line, flush=True)
        with open(self.path("train.log"), "a") as f:
            f.write(line + "\n")


def train_step(work, threads, seed, model_cfg, hp, make_eval):
    """Train (or resume) on work/data.pt and save work/final.pt. make_eval(data) returns the
    on_eval(step, model) callback of training.train."""
    torch.set_num_threads(threads)
    d = torch.load(work.path("data.pt"))
    torch.manual_seed(seed)
    model = BitNet(Config(vocab=d["vocab"], **model_cfg))
    if not os.path.exists(work.path("ckpt.pt")):
        n = sum(p.numel() for p in model.parameters())
        work.log(f"model {model_cfg} vocab {d['vocab']}: {n} parameters; train {hp}")
    r = training.train(model, d["train"], hp, work.path("ckpt.pt"), work.log, seed, on_eval=make_eval(d))
    training.save_final(work.path("final.pt"), model, r["steps"], r["seconds"])
    work.log(f"training done: {r['steps']} steps, {r['seconds'] / 60:.1f} min")


def export_step(work, out, **kwargs):
    """work/final.pt and work/tokenizer.json → the GGUF file `out` (kwargs: export_gguf.export's)."""
    from . import export_gguf
    model, _ = training.load_final(work.path("final.pt"))
    _, tokens, merges = tok.load(work.path("tokenizer.json"))
    os.makedirs(os.path.dirname(out), exist_ok=True)
    export_gguf.export(model, tokens, merges, out, **kwargs)
    work.log(f"exported {out} ({os.path.getsize(out)} bytes)")


def run_steps(doc, work, steps, default_threads, add_args=None):
    """The command line: `STEP [--threads N] [--bitnetd PATH]` (+ add_args(parser)); steps maps each
    step name to a function of the parsed arguments, run in order for `all`."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("step", choices=["all", *steps])
    ap.add_argument("--threads", type=int, default=default_threads,
                    help=f"torch CPU threads (default {default_threads})")
    if add_args:
        add_args(ap)
    ap.add_argument("--bitnetd", default=os.environ.get("BITNETD_BIN",
                                                        os.path.join(REPO, ".build/release/bitnetd")))
    a = ap.parse_args()
    os.makedirs(work.root, exist_ok=True)
    for name, step in steps.items():
        if a.step in ("all", name):
            step(a)

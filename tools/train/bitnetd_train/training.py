"""Quantization-aware training of decide models, shared by bitnetd-train and tools/train-demo:
sequence encoding with bitnetd's label rule, batches, the learning-rate schedule, a resumable
training loop and PyTorch's own decide scores (the same semantics as `bitnetd decide`).
"""

from __future__ import annotations

import math
import os
import random
import time

import torch
import torch.nn.functional as F

from . import tok
from .bitnetd import continuation
from .model import BitNet, Config


def common_prefix(a, b):
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def label_sequence(tk, prompt, label):
    """(BOS + tokens of prompt + continuation, index of the first token that scores the label):
    the label's tokens start after the part shared with the prompt alone, as in bitnetd."""
    bos = tk.token_to_id(tok.BOS)
    p = tk.encode(prompt).ids
    full = tk.encode(prompt + continuation(prompt, label)).ids
    return [bos] + full, 1 + common_prefix(full, p)


def encode_example(tk, prompt, label):
    """A training sequence: BOS + prompt + label + EOS; returns (ids, index of the first answer
    token). The loss covers the label's tokens and the EOS."""
    ids, start = label_sequence(tk, prompt, label)
    return ids + [tk.token_to_id(tok.EOS)], start


def make_batch(items, prompt_weight=0.0):
    T = max(len(x) for x, _ in items)
    ids = torch.zeros(len(items), T, dtype=torch.long)
    w = torch.zeros(len(items), T)        # weight of the target at position t (predicting ids[t])
    for i, (x, a) in enumerate(items):
        ids[i, :len(x)] = torch.tensor(x)
        w[i, 1:a] = prompt_weight
        w[i, a:len(x)] = 1.0
    return ids, w


def lr_at(step, hp):
    """Linear warm-up to hp["lr"], then cosine decay to hp["min_lr"] at hp["steps"]."""
    if step < hp["warmup"]:
        return hp["lr"] * (step + 1) / hp["warmup"]
    p = (step - hp["warmup"]) / max(1, hp["steps"] - hp["warmup"])
    return hp["min_lr"] + 0.5 * (hp["lr"] - hp["min_lr"]) * (1 + math.cos(math.pi * min(p, 1)))


def loss_fn(model, ids, w):
    inp, tgt, wt = ids[:, :-1], ids[:, 1:], w[:, 1:]
    sel = wt > 0
    logits = model(inp, need=sel)
    l = F.cross_entropy(logits, tgt[sel], reduction="none")
    return (l * wt[sel]).sum() / wt[sel].sum()


def make_optimizer(model, hp):
    decay = [p for _, p in model.named_parameters() if p.dim() == 2]
    other = [p for _, p in model.named_parameters() if p.dim() != 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": hp["weight_decay"]},
                              {"params": other, "weight_decay": 0.0}], lr=hp["lr"], betas=(0.9, 0.95))


class _Order:
    """Which example each position of the training stream is: epoch e is a permutation drawn from
    random.Random(seed + e), so a resumed run continues with exactly the same batches."""

    def __init__(self, n, seed):
        self.n, self.seed, self.cache = n, seed, {}

    def at(self, pos):
        e, i = divmod(pos, self.n)
        if e not in self.cache:
            perm = list(range(self.n))
            random.Random(self.seed + e).shuffle(perm)
            self.cache = {e: perm}
        return self.cache[e][i]


def _fmt_min(s):
    return f"{s / 60:.1f} min"


def train(model, enc, hp, ckpt_path, log, seed, *, on_eval=None, deadline_s=None, progress_s=15.0):
    """Trains `model` on `enc` [(ids, answer start)] for hp["steps"] steps of hp["batch"].

    Resumable: the state is saved to ckpt_path every hp["ckpt_minutes"], at the end of every
    epoch, on Ctrl-C and at the end, and training continues from it when it exists. on_eval(step,
    model) is called every hp["eval_every"] steps (0: never). With deadline_s, training stops (and
    saves) once that many seconds of training have been spent, counting earlier runs.
    Returns {"steps", "seconds", "complete"}."""
    opt = make_optimizer(model, hp)
    step, spent = 0, 0.0
    if os.path.exists(ckpt_path):
        ck = torch.load(ckpt_path)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        step, spent = ck["step"], ck["seconds"]
        log(f"resumed at step {step} ({_fmt_min(spent)} trained)")
    order = _Order(len(enc), seed)
    B, n, steps = hp["batch"], len(enc), hp["steps"]
    t_start = time.time()
    start_step = step

    def elapsed():
        return spent + time.time() - t_start

    def save():
        tmp = ckpt_path + ".tmp"
        torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step,
                    "seconds": elapsed()}, tmp)
        os.replace(tmp, ckpt_path)

    last_ckpt = last_log = time.time()
    ema = None
    complete = True
    model.train()
    try:
        while step < steps:
            if deadline_s is not None and elapsed() > deadline_s:
                log(f"time budget reached at step {step}/{steps}: stopping early")
                complete = False
                break
            items = [enc[order.at(step * B + j)] for j in range(B)]
            ids, w = make_batch(items, hp.get("prompt_weight", 0.0))
            for g in opt.param_groups:
                g["lr"] = lr_at(step, hp)
            loss = loss_fn(model, ids, w)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            step += 1
            ema = loss.item() if ema is None else 0.95 * ema + 0.05 * loss.item()
            now = time.time()
            if now - last_log >= progress_s or step == steps:
                last_log = now
                rate = (now - t_start) / (step - start_step)
                log(f"step {step}/{steps} ({100 * step // steps}%) epoch {step * B / n:.1f} "
                    f"loss {ema:.4f} lr {lr_at(step, hp):.1e} {_fmt_min(elapsed())}, "
                    f"ETA {_fmt_min(rate * (steps - step))}")
            if on_eval and hp.get("eval_every") and (step % hp["eval_every"] == 0 or step == steps):
                on_eval(step, model)
                model.train()
            epoch_done = (step * B) // n > ((step - 1) * B) // n
            if epoch_done or now - last_ckpt > hp["ckpt_minutes"] * 60:
                save()
                last_ckpt = time.time()
    except KeyboardInterrupt:
        save()
        log(f"interrupted at step {step}: saved {ckpt_path}; run again to continue")
        raise
    save()
    return {"steps": step, "seconds": elapsed(), "complete": complete}


def save_final(path, model, steps, seconds, **extra):
    d = {"model": model.state_dict(), "config": model.cfg.to_dict(), "steps": steps,
         "seconds": seconds}
    d.update(extra)
    tmp = path + ".tmp"
    torch.save(d, tmp)
    os.replace(tmp, path)


def load_final(path):
    f = torch.load(path)
    cfg = dict(f["config"])
    cfg.setdefault("vocab", f.get("vocab"))     # final.pt of the demo before the tools shared code
    model = BitNet(Config(**cfg))
    model.load_state_dict(f["model"])
    model.eval()
    return model, f


@torch.no_grad()
def label_probabilities(model, tk, prompts, labels, batch=96):
    """For each prompt, the probabilities of `labels` as bitnetd decide computes them: a label's
    score is the sum of the log-probabilities of its tokens after the prompt (F16 emulation on),
    softmax over the labels. `labels` is one list for all prompts or a list per prompt."""
    per_prompt = labels and isinstance(labels[0], (list, tuple))
    seqs = []                       # (prompt index, ids, start)
    for i, p in enumerate(prompts):
        for l in (labels[i] if per_prompt else labels):
            ids, start = label_sequence(tk, p, l)
            seqs.append((i, ids, start))
    was_training = model.training
    model.eval()
    scores = [[] for _ in prompts]
    for c in range(0, len(seqs), batch):
        chunk = seqs[c:c + batch]
        T = max(len(s) for _, s, _ in chunk)
        ids = torch.zeros(len(chunk), T, dtype=torch.long)
        need = torch.zeros(len(chunk), T, dtype=torch.bool)
        tgt, owner = [], []
        for b, (_, s, start) in enumerate(chunk):
            ids[b, :len(s)] = torch.tensor(s)
            for t in range(start, len(s)):     # position t-1 predicts token t
                need[b, t - 1] = True
                tgt.append(s[t])
                owner.append(b)
        lp = torch.log_softmax(model(ids, need=need).double(), -1)
        vals = lp[torch.arange(len(tgt)), torch.tensor(tgt)]
        sums = torch.zeros(len(chunk), dtype=torch.float64).index_add_(0, torch.tensor(owner), vals)
        for b, (i, _, _) in enumerate(chunk):
            scores[i].append(sums[b].item())
    if was_training:
        model.train()
    return [torch.softmax(torch.tensor(s, dtype=torch.float64), 0).tolist() for s in scores]

"""bitnetd-train's command line: checks the input in whatever Python runs it (stage 1), then trains,
exports and evaluates in the training Python (stage 2: the venv or BITNETD_TRAIN_PYTHON).

Exit status: 0 done, 1 bad input (data, rules, configuration, options), 2 environment (bitnetd,
Python venv, PyTorch installation).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time

from . import environment as env
from .errors import ENVIRONMENT, Failure, bad_input

STAGE_VENV = "venv"     # re-executed in the venv only because this Python had no PyYAML

USAGE_EXAMPLE = """
example (the cold-room example, about 5 minutes on a laptop):
  tools/train/bitnetd-train --data tools/train/examples/coldroom/train.jsonl \\
      --route tools/train/examples/coldroom/coldroom.yaml --out /tmp/coldroom

exit status: 0 done, 1 bad input, 2 environment (bitnetd, Python venv, PyTorch).
See tools/train/README.md.
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        self.print_usage(sys.stderr)
        raise Failure(f"{message} (see --help)")


def _positive(kind):
    def conv(s):
        try:
            v = kind(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {s!r}")
        if v <= 0:
            raise argparse.ArgumentTypeError(f"must be more than 0, got {s}")
        return v
    return conv


def parse_args(argv):
    ap = _Parser(prog="bitnetd-train", formatter_class=argparse.RawDescriptionHelpFormatter,
                 description="Train a tiny ternary BitNet b1.58 model that answers one decide route\n"
                             "of a bitnetd configuration, from labelled readings.",
                 epilog=USAGE_EXAMPLE)
    ap.add_argument("--data", required=True, metavar="F.jsonl|F.csv",
                    help='readings: JSON Lines {"reading": {...}, "label": "...", "topic": "..."} '
                         "or CSV with a label column (other columns are fields)")
    ap.add_argument("--route", required=True, metavar="CONFIG.yaml",
                    help="the bitnetd configuration that holds the route")
    ap.add_argument("--route-name", metavar="NAME",
                    help="the decide route to train for (default: the configuration's only one)")
    ap.add_argument("--out", required=True, metavar="DIR",
                    help="output folder: model.gguf, README.md, route.yaml, eval.json, SHA256SUMS, "
                         "checkpoints/ (run again with the same DIR to resume)")
    ap.add_argument("--max-minutes", type=_positive(float), default=30.0, metavar="N",
                    help="training time budget in minutes (default 30); the model size and steps "
                         "are chosen to fit it")
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--rules", metavar="R",
                     help="label the readings with rules (lines `LABEL: EXPR`, first match wins, "
                          "last line may be `LABEL: else`) instead of their own labels")
    src.add_argument("--teacher", metavar="MODEL.gguf",
                     help="label the readings with `bitnetd decide` on this (larger) model")
    ap.add_argument("--heldout", metavar="F",
                    help="also evaluate on these labelled readings (same format as --data)")
    ap.add_argument("--seed", type=int, default=1, metavar="S", help="random seed (default 1)")
    ap.add_argument("--bitnetd", metavar="PATH",
                    help="the bitnetd binary (default: $BITNETD_BIN, bitnetd on PATH, or this "
                         "checkout's .build/release/bitnetd)")
    ap.add_argument("--threads", type=_positive(int), default=min(4, os.cpu_count() or 1),
                    metavar="N", help="torch threads and parallel `bitnetd decide` processes "
                                      "(default: the CPUs, at most 4)")
    return ap.parse_args(argv)


class Log:
    """Progress on stdout, and in DIR/train.log once DIR exists."""

    def __init__(self):
        self.path = None

    def __call__(self, msg):
        line = time.strftime("%H:%M:%S ") + msg
        print(line, flush=True)
        if self.path:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(time.strftime("%Y-%m-%d ") + line + "\n")


def _dataset_path(out):
    return os.path.join(out, "checkpoints", "dataset.json")


def stage1(args, log):
    """Checks and prepares; returns when DIR/checkpoints/dataset.json is written."""
    from . import bitnetd, dataset
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise bad_input(f"--out {args.out} exists and is not a folder")
    for opt, p in (("--data", args.data), ("--route", args.route), ("--rules", args.rules),
                   ("--heldout", args.heldout)):
        if p is not None and not os.path.isfile(p):
            raise bad_input(f"{opt} {p}: no such file")
    binary = bitnetd.find_binary(args.bitnetd)
    ds, _ = dataset.prepare(args, binary, log)
    os.makedirs(os.path.join(args.out, "checkpoints"), exist_ok=True)
    log.path = os.path.join(args.out, "train.log")
    path = _dataset_path(args.out)
    new_fp = dataset.fingerprint(ds)
    if os.path.exists(path):
        with open(path) as f:
            old_fp = json.load(f).get("fingerprint")
        started = any(os.path.exists(os.path.join(args.out, "checkpoints", n))
                      for n in ("plan.json", "ckpt.pt", "final.pt"))
        if started and old_fp != new_fp:
            raise bad_input(f"{args.out}/checkpoints holds a run on other data, labels, route or seed; "
                            f"use another --out, or delete {args.out}/checkpoints to start over")
    ds["fingerprint"] = new_fp
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(ds, f)
    os.replace(tmp, path)
    c = ds["data"]["counts"]
    log(f"data OK: {ds['data']['readings']} readings ({', '.join(f'{l} {c.get(l, 0)}' for l in ds['route']['labels'])}); "
        f"{len(ds['train'])} to train on, {len(ds['test'])} held out"
        + (f", {len(ds['heldout'])} in --heldout" if ds["heldout"] else ""))


def stage2(args, log):
    """Trains, exports, evaluates and writes DIR; prints the summary."""
    import torch

    from . import bitnetd, dataset, fit, report, routeconf, tok
    path = _dataset_path(args.out)
    if not os.path.exists(path):
        raise bad_input(f"{path} is missing (stage 1 did not run)")
    with open(path) as f:
        ds = json.load(f)
    log.path = os.path.join(args.out, "train.log")
    signal.signal(signal.SIGTERM, _interrupt)     # a `kill` saves the checkpoint like Ctrl-C
    torch.set_num_threads(args.threads)
    binary = bitnetd.find_binary(args.bitnetd)
    ckdir = os.path.join(args.out, "checkpoints")
    model, tokens, merges, plan, res = fit.run(ds, ckdir, args.max_minutes, log)
    gguf = os.path.abspath(os.path.join(args.out, "model.gguf"))
    fit.export(model, tokens, merges, gguf, ds["route"]["name"])
    log(f"exported {gguf} ({os.path.getsize(gguf):,} bytes)")
    tk = tok.build(tokens, merges)
    split = report.summarize(report.predictions(model, tk, ds["test"], ds["route"], binary, gguf,
                                                args.threads, log), ds["route"]["labels"])
    held = None
    if ds["heldout"]:
        held = report.summarize(report.predictions(model, tk, ds["heldout"], ds["route"], binary,
                                                   gguf, args.threads, log), ds["route"]["labels"])
        held["path"] = ds["heldout_path"]
    ev = {
        "route": ds["route"]["name"],
        "split": split,
        "heldout": held,
        "model": {"path": gguf, "bytes": os.path.getsize(gguf), "sha256": dataset.sha256(gguf),
                  "size": plan["size"], "config": plan["model"], "vocab": len(tokens),
                  "parameters": sum(p.numel() for p in model.parameters())},
        "training": {"steps": res["steps"], "planned_steps": plan["steps"], "batch": plan["batch"],
                     "epochs": res["steps"] * plan["batch"] / max(1, len(ds["train"])),
                     "minutes": res["seconds"] / 60, "complete": res["complete"],
                     "threads": args.threads, "seed": ds["seed"],
                     "readings": len(ds["train"]), "held_out": len(ds["test"])},
    }
    route = routeconf.select(ds["route"]["config"], ds["route"]["name"])
    report.write_all(args.out, ds, ev, routeconf.route_yaml(route, gguf))
    for name, s in (("held-out split", split), ("--heldout", held)):
        if s:
            log(f"{name}: {s['n']} readings, bitnetd {100 * s['accuracy_bitnetd']:.2f} %, PyTorch "
                f"{100 * s['accuracy_torch']:.2f} %, agreement {100 * s['agreement']:.2f} % "
                f"(majority class {100 * s['majority_baseline']['accuracy']:.2f} %)")
    log(f"done: {args.out}/model.gguf; paste {args.out}/route.yaml under `routes:` of your configuration")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    log = Log()
    try:
        args = parse_args(argv)
        stage = os.environ.get(env.STAGE_ENV)
        if stage != "train":
            from .routeconf import NeedsYAML
            try:
                stage1(args, log)
            except NeedsYAML:
                if stage:
                    raise Failure(f"{sys.executable} cannot import yaml (PyYAML)", ENVIRONMENT)
                log("this Python has no PyYAML: continuing in the training environment")
                env.reexec(env.training_python(log), _script(), argv, STAGE_VENV)
            if stage != STAGE_VENV:
                env.reexec(env.training_python(log), _script(), argv, "train")
        stage2(args, log)
        return 0
    except Failure as e:
        print(f"bitnetd-train: {e.message}", file=sys.stderr)
        return e.status
    except KeyboardInterrupt:
        print("bitnetd-train: interrupted (run the same command again to resume)", file=sys.stderr)
        return 130


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def _script():
    return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bitnetd-train")

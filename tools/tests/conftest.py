"""Shared fixtures for the reference-vs-engine tests (tools/tests).

The engine binary is $BITNETD_BIN or /work/main/.build/release/bitnetd (relative to this repo:
.build/release/bitnetd). Engine tests FAIL (never skip) when it is missing.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(REPO, "tools", "reference"))

import bitnet_ref as R  # noqa: E402


def engine_binary():
    return os.environ.get("BITNETD_BIN") or os.path.join(REPO, ".build", "release", "bitnetd")


def run_engine(args, timeout=600, kernel=None):
    """Runs the engine; kernel: None = the engine's default kernel path (BITNETD_KERNEL removed from
    the environment), else the value for BITNETD_KERNEL (e.g. "scalar")."""
    exe = engine_binary()
    if not (os.path.isfile(exe) and os.access(exe, os.X_OK)):
        pytest.fail(f"engine binary not found or not executable: {exe} "
                    f"(build it with `swift build -c release` or set BITNETD_BIN)", pytrace=False)
    cmd = [exe] + [str(a) for a in args]
    env = dict(os.environ)
    env.pop("BITNETD_KERNEL", None)
    if kernel:
        env["BITNETD_KERNEL"] = kernel
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if p.returncode != 0:
        pytest.fail(f"engine command failed (exit {p.returncode}): "
                    f"{'BITNETD_KERNEL=' + kernel + ' ' if kernel else ''}{' '.join(cmd)}\n"
                    f"stdout:\n{p.stdout[-4000:]}\nstderr:\n{p.stderr[-4000:]}", pytrace=False)
    return p


def make_model_args(cfg, out):
    a = ["dev", "make-model", "--out", out, "--arch", cfg["arch"], "--layers", cfg["layers"],
         "--embd", cfg["embd"], "--heads", cfg["heads"], "--kv-heads", cfg["kv_heads"],
         "--ff", cfg["ff"], "--vocab", cfg["vocab"], "--type", cfg["type"], "--seed", cfg["seed"]]
    if cfg.get("hidden_activation"):
        a += ["--hidden-activation", cfg["hidden_activation"]]
    if cfg.get("scale_tensors"):
        a += ["--scale-tensors"]
    if cfg.get("embd_type"):
        a += ["--embd-type", cfg["embd_type"]]
    if cfg.get("context"):
        a += ["--context", cfg["context"]]
    return a


class EngineModels:
    """Session cache: one generated GGUF (+ loaded reference model) per configuration name."""

    def __init__(self, tmp_factory):
        self.tmp = tmp_factory
        self.paths = {}
        self.models = {}

    def path(self, name, cfg):
        if name not in self.paths:
            d = self.tmp.mktemp("model-" + name)
            out = str(d / "model.gguf")
            run_engine(make_model_args(cfg, out))
            if not os.path.isfile(out):
                pytest.fail(f"`dev make-model` exited 0 but wrote no file {out}", pytrace=False)
            self.paths[name] = out
        return self.paths[name]

    def ref(self, name, cfg):
        if name not in self.models:
            self.models[name] = R.BitNetModel(self.path(name, cfg))
        return self.models[name]


@pytest.fixture(scope="session")
def engine_models(tmp_path_factory):
    return EngineModels(tmp_path_factory)


def engine_logits(model_path, ids, prompt_len, out_dir, dump_dir=None, n_vocab=None, kernel=None):
    out = os.path.join(out_dir, "logits.bin")
    args = ["logits", "--model", model_path, "--token-ids", ",".join(map(str, ids)),
            "--out", out, "--prompt-len", prompt_len]
    if dump_dir is not None:
        args += ["--dump-stages", dump_dir]
    run_engine(args, kernel=kernel)
    a = np.fromfile(out, dtype="<f4")
    if n_vocab is not None:
        if a.size != len(ids) * n_vocab:
            pytest.fail(f"engine logits file has {a.size} floats, expected {len(ids)}x{n_vocab}",
                        pytrace=False)
        a = a.reshape(len(ids), n_vocab)
    return a


def normal_token_ids(model):
    """Ids that are not special tokens (token_type NORMAL/BYTE, not a declared special id)."""
    V = model.n_vocab
    ok = np.ones(V, bool)
    if model.token_type is not None and len(model.token_type) == V:
        ok &= np.isin(model.token_type, (1, 6))
    g = model.gguf
    for k, v in g.metadata.items():
        if k.startswith("tokenizer.ggml.") and k.endswith("_token_id") and isinstance(v, int) and v < V:
            ok[v] = False
    return np.nonzero(ok)[0]

"""Shared fixtures for the reference-vs-engine tests (tools/tests), and a Mosquitto broker for the
tests that run the daemon (the demo model's and bitnetd-train's).

The engine binary is $BITNETD_BIN or /work/main/.build/release/bitnetd (relative to this repo:
.build/release/bitnetd). Engine tests FAIL (never skip) when it is missing.
"""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(REPO, "tools", "reference"))

import bitnet_ref as R  # noqa: E402


def engine_binary():
    return os.environ.get("BITNETD_BIN") or os.path.join(REPO, ".build", "release", "bitnetd")


def run_engine(args, timeout=600, kernel=None, ok_exit=(0,)):
    """Runs the engine; kernel: None = the engine's default kernel path (BITNETD_KERNEL removed from
    the environment), else the value for BITNETD_KERNEL (e.g. "scalar"). Fails the test unless the
    exit status is in ok_exit."""
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
    if p.returncode not in ok_exit:
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
    if cfg.get("output_type"):
        a += ["--output-type", cfg["output_type"]]
    if cfg.get("bias"):
        a += ["--bias"]
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


def engine_logits(model_path, ids, prompt_len, out_dir, dump_dir=None, n_vocab=None, kernel=None,
                  graph=None):
    """graph: None = the engine's own choice, else the value for `--graph`."""
    out = os.path.join(out_dir, "logits.bin")
    args = ["logits", "--model", model_path, "--token-ids", ",".join(map(str, ids)),
            "--out", out, "--prompt-len", prompt_len]
    if dump_dir is not None:
        args += ["--dump-stages", dump_dir]
    if graph is not None:
        args += ["--graph", graph]
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


# ------------------------------------------------------------------------ a real broker

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, what, timeout=10):
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            pytest.fail(f"{what} exited with {proc.returncode}", pytrace=False)
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    pytest.fail(f"{what} does not listen on 127.0.0.1:{port}", pytrace=False)


@pytest.fixture
def broker():
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not os.path.exists(exe) or not shutil.which("mosquitto_pub"):
        pytest.fail("mosquitto and mosquitto-clients are needed (scripts/setup installs them)",
                    pytrace=False)
    d = tempfile.mkdtemp(prefix="bitnetd-test-broker-")
    port = free_port()
    conf = os.path.join(d, "mosquitto.conf")
    with open(conf, "w") as f:
        f.write(f"user root\nlistener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    log = open(os.path.join(d, "mosquitto.log"), "w")
    p = subprocess.Popen([exe, "-c", conf], stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_port(port, p, "mosquitto")
        yield port, d
    finally:
        p.terminate()
        p.wait(timeout=10)
        log.close()
        shutil.rmtree(d, ignore_errors=True)

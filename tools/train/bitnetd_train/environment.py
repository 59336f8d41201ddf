"""The Python that trains: a venv of bitnetd-train's own, made on first use (standard library only).

Debian's system Python is externally managed (PEP 668), so PyTorch cannot be pip-installed into
it; bitnetd-train keeps a venv under ${XDG_CACHE_HOME:-~/.cache}/bitnetd-train/venv and re-executes
itself there once the input has been validated (validation needs only the standard library, plus
PyYAML when the system has it). BITNETD_TRAIN_PYTHON names another interpreter that already has
torch, tokenizers, numpy and PyYAML (tests, or a Python of your own) and skips the venv.

PyTorch comes from its CPU wheel index (PyPI's Linux wheel is the CUDA build, ~3 GB with its
libraries); with PIP_FIND_LINKS set, a torch wheel found there is installed first without any
index (offline machines, CI caches), and only its dependencies come from PyPI.
"""

from __future__ import annotations

import os
import subprocess
import sys

from .errors import environment

TORCH_INDEX = "https://download.pytorch.org/whl/cpu"
PACKAGES = ["numpy", "tokenizers", "pyyaml"]
MODULES = ["torch", "tokenizers", "numpy", "yaml"]
# Bumped when PACKAGES change, so that an older venv is completed on next use.
READY_MARK = "bitnetd-train-ready-1"
STAGE_ENV = "BITNETD_TRAIN_STAGE"    # set in the re-executed process: never re-execute twice


def cache_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "bitnetd-train")


def venv_dir() -> str:
    return os.path.join(cache_dir(), "venv")


def venv_python() -> str:
    return os.path.join(venv_dir(), "bin", "python")


def venv_ready() -> bool:
    return os.path.isfile(venv_python()) and os.path.isfile(os.path.join(venv_dir(), READY_MARK))


def has_modules(python: str, modules=MODULES) -> bool:
    code = "import " + ", ".join(modules)
    try:
        return subprocess.run([python, "-c", code], capture_output=True, timeout=300).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _pip(python, args, log):
    cmd = [python, "-m", "pip", "install", "--disable-pip-version-check"] + args
    log("  " + " ".join(cmd[3:]))
    p = subprocess.run(cmd, capture_output=True, text=True)
    return p.returncode == 0, (p.stdout + p.stderr)[-3000:]


def ensure_venv(log) -> str:
    """The venv's python, made and filled if needed; Failure (exit 2) when that is impossible."""
    if venv_ready():
        return venv_python()
    vdir = venv_dir()
    log(f"setting up the training environment in {vdir} (once; PyTorch CPU, ~200 MB download)")
    if not os.path.isfile(venv_python()):
        try:
            os.makedirs(cache_dir(), exist_ok=True)
        except OSError as e:
            raise environment(f"cannot create {cache_dir()}: {e} (set XDG_CACHE_HOME to a writable folder)")
        p = subprocess.run([sys.executable, "-m", "venv", vdir], capture_output=True, text=True)
        if p.returncode != 0:
            raise environment(
                f"cannot create a Python venv in {vdir}: {(p.stdout + p.stderr).strip()[-800:]}\n"
                "Install the venv module (Debian/Ubuntu: sudo apt install python3-venv), or set "
                "BITNETD_TRAIN_PYTHON to a Python that has torch, tokenizers, numpy and PyYAML.")
    py = venv_python()
    ok = False
    if os.environ.get("PIP_FIND_LINKS"):
        ok, _ = _pip(py, ["--no-index", "--no-deps", "torch"], log)
    if ok:
        ok, out = _pip(py, ["torch"] + PACKAGES, log)      # torch's dependencies from PyPI
    else:
        # Few retries: an unreachable index should fail in a minute, not in a quarter of an hour.
        ok, out = _pip(py, ["torch", "--index-url", TORCH_INDEX, "--retries", "2", "--timeout", "30"], log)
        if ok:
            ok, out = _pip(py, PACKAGES, log)
    if not ok:
        raise environment(f"installing PyTorch and its companions into {vdir} failed:\n{out}\n"
                          "Check the network (PyPI and " + TORCH_INDEX + " must be reachable) or "
                          "put a torch CPU wheel in a folder named by PIP_FIND_LINKS, then run again.")
    if not has_modules(py):
        raise environment(f"the venv {vdir} was filled but cannot import {', '.join(MODULES)}; "
                          f"delete it and run again")
    with open(os.path.join(vdir, READY_MARK), "w") as f:
        f.write("ok\n")
    log("training environment ready")
    return py


def training_python(log) -> str:
    """The interpreter to train with: BITNETD_TRAIN_PYTHON, else the venv (made if needed)."""
    given = os.environ.get("BITNETD_TRAIN_PYTHON")
    if given:
        if not has_modules(given):
            raise environment(f"BITNETD_TRAIN_PYTHON={given} cannot import {', '.join(MODULES)}; "
                              "install them there or unset it to use bitnetd-train's own venv")
        return given
    return ensure_venv(log)


def reexec(python: str, script: str, argv, stage: str):
    """Replaces this process by `python script argv…` with STAGE_ENV=stage."""
    env = dict(os.environ)
    env[STAGE_ENV] = stage
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(python, [python, script] + list(argv), env)
    except OSError as e:
        raise environment(f"cannot run {python}: {e}")

"""bitnetd as a child process (standard library only): `bitnetd prompt` renders every prompt the
model is trained and evaluated on, `bitnetd decide` labels readings with a teacher and evaluates the
exported model exactly as the daemon would decide.

`decide` scores each label as the text that follows the prompt, with a space between them when the
prompt does not end in whitespace and the label does not start with it (Engine.plan);
`continuation()` is that rule, so training sees the same text.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from .errors import bad_input, environment

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_BINARY = os.path.join(HERE, "..", "..", "..", ".build", "release", "bitnetd")


def continuation(prompt, label):
    """The text bitnetd scores for `label` after `prompt`."""
    if (prompt and not prompt[-1].isspace()) and not (label and label[0].isspace()):
        return " " + label
    return label


def find_binary(given=None):
    """--bitnetd, $BITNETD_BIN, `bitnetd` on PATH, or this checkout's release build."""
    for cand, why in ((given, "--bitnetd"), (os.environ.get("BITNETD_BIN"), "BITNETD_BIN")):
        if cand:
            if os.path.isfile(cand) and os.access(cand, os.X_OK):
                return os.path.abspath(cand)
            raise environment(f"{why}: {cand} is not an executable file")
    for cand in (shutil.which("bitnetd"), os.path.abspath(REPO_BINARY)):
        if cand and os.path.isfile(cand) and os.access(cand, os.X_OK):
            return cand
    raise environment("bitnetd not found: install it, put it on PATH, pass --bitnetd PATH or set "
                      "BITNETD_BIN")


def _run(cmd, stdin=None, timeout=None):
    # A bitnetd being replaced (an upgrade, a rebuild) is missing or busy for a moment: retry for
    # up to a minute before giving up, so a long run is not lost to it.
    for attempt in range(30):
        try:
            return subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=timeout)
        except OSError as e:
            if e.errno not in (errno.ETXTBSY, errno.ENOENT) or attempt == 29:
                raise environment(f"cannot run {cmd[0]}: {e}")
            time.sleep(2)
        except subprocess.TimeoutExpired:
            raise environment(f"{' '.join(cmd[:2])} did not finish within {timeout} s")


def check_binary(binary):
    """bitnetd runs and has the `prompt` command (older versions lack it)."""
    p = _run([binary, "prompt", "--help"], timeout=60)
    if p.returncode != 0 or "bitnetd prompt" not in p.stdout:
        raise environment(f"{binary} has no `prompt` command; bitnetd-train needs a newer bitnetd "
                          "(build this checkout: swift build -c release)")


def render_prompts(binary, config, route, records):
    """The daemon's prompt for each record (a data problem → bad input naming FILE:LINE)."""
    if not records:
        return []
    lines = []
    for r in records:
        w = {"payload": r.reading}
        if r.topic is not None:
            w["topic"] = r.topic
        lines.append(json.dumps(w, ensure_ascii=False))
    cmd = [binary, "prompt", "--config", config, "--route", route, "--wrapped"]
    p = _run(cmd, "\n".join(lines) + "\n", timeout=600)
    out = p.stdout.split("\n")
    if out and out[-1] == "":
        out.pop()
    if p.returncode == 2 or (p.returncode != 0 and len(out) != len(records)):
        raise bad_input(f"`bitnetd prompt` cannot use {config} (route {route}):\n{p.stderr.strip()}")
    if len(out) != len(records):
        raise environment(f"`bitnetd prompt` printed {len(out)} lines for {len(records)} readings:\n"
                          f"{p.stderr.strip()[-2000:]}")
    details = {}
    for line in p.stderr.splitlines():
        # bitnetd prompt: line N: CODE: detail
        head, _, rest = line.partition("line ")
        num, _, detail = rest.partition(": ")
        if head.startswith("bitnetd prompt") and num.isdigit():
            details[int(num)] = detail
    prompts, problems = [], []
    for i, (r, o) in enumerate(zip(records, out), 1):
        v = json.loads(o)
        if v is None:
            problems.append(f"{r.where}: {details.get(i, 'cannot be rendered')}")
        prompts.append(v)
    if problems:
        more = f"\n  … and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise bad_input(f"the route's prompt cannot be built for {len(problems)} reading"
                        f"{'s' if len(problems) > 1 else ''} (bitnetd prompt, route {route}):\n  "
                        + "\n  ".join(problems[:20]) + more)
    return prompts


def _label_args(labels):
    # One --label each: labels may contain commas.
    return [a for l in labels for a in ("--label", l)]


def decide(binary, model, prompt, labels, min_confidence=0.0, threads=1):
    """One `bitnetd decide --json` → its JSON answer (label, probabilities, latency_ms, …)."""
    cmd = [binary, "decide", "--model", model, "--threads", str(threads), "--prompt", prompt,
           *_label_args(labels), "--min-confidence", repr(float(min_confidence)), "--json"]
    p = _run(cmd, timeout=600)
    if p.returncode != 0:
        raise environment(f"bitnetd decide failed (exit {p.returncode}) on {model}:\n"
                          f"{p.stderr.strip()[-2000:]}\nprompt: {prompt!r}")
    return json.loads(p.stdout)


def decide_many(binary, model, prompts, labels, min_confidence=0.0, workers=1, on_done=None):
    """decide() for each prompt, answers in order: `workers` `bitnetd decide --stdin` processes
    (one engine thread each) over contiguous shares of the prompts — one model load per process
    (a large teacher is loaded once, not once per reading), the prompts' common prefix computed
    once. on_done(i, answer) is called as answers arrive (for progress and caches)."""
    answers = [None] * len(prompts)
    n = max(1, min(workers, len(prompts)))
    bounds = [round(k * len(prompts) / n) for k in range(n + 1)]

    def share(k):
        lo, hi = bounds[k], bounds[k + 1]
        if lo == hi:
            return
        cmd = [binary, "decide", "--model", model, "--threads", "1", "--stdin", *_label_args(labels),
               "--min-confidence", repr(float(min_confidence)), "--json"]
        for attempt in range(30):
            try:
                p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                break
            except OSError as e:
                if e.errno not in (errno.ETXTBSY, errno.ENOENT) or attempt == 29:
                    raise environment(f"cannot run {binary}: {e}")
                time.sleep(2)
        feeder = threading.Thread(target=lambda: (p.stdin.write("".join(json.dumps(q) + "\n" for q in prompts[lo:hi])),
                                                  p.stdin.close()), daemon=True)
        feeder.start()
        i = lo
        for line in p.stdout:
            a = json.loads(line)
            if a is None:
                break
            answers[i] = a
            if on_done:
                on_done(i, a)
            i += 1
        err = p.stderr.read()
        p.wait()
        feeder.join()
        if p.returncode != 0 or i != hi:
            raise environment(f"bitnetd decide --stdin failed (exit {p.returncode}) on {model} at prompt {i}:\n"
                              f"{err.strip()[-2000:]}")

    with ThreadPoolExecutor(max_workers=n) as ex:
        list(ex.map(share, range(n)))
    return answers

"""End-to-end accuracy of the bundled demo model (models/demo/demo.gguf) through bitnetd itself.

The held-out readings in models/demo/heldout.jsonl were never trained on; each carries the exact
prompt, the expected (rule) label and the training tool's own fake-quant prediction. bitnetd must
reach MIN_ACCURACY on them and agree with the training tool on MIN_AGREEMENT of them, through
  * the `decide` CLI, and
  * the daemon (`bitnetd run --config etc/demo.yaml`) behind a real Mosquitto broker.
Any bug in tokenizer, kernels, graph, scoring, templates or daemon plumbing shows up here.
"""

import hashlib
import json
import os
import re
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import REPO, engine_binary

MIN_ACCURACY = 0.95     # bitnetd's decisions vs the expected labels
MIN_AGREEMENT = 0.99    # bitnetd's decisions vs the training tool's predictions
MIN_READINGS = 200

DEMO = os.path.join(REPO, "models", "demo")
MODEL = os.path.join(DEMO, "demo.gguf")
CONFIG = os.path.join(REPO, "etc", "demo.yaml")


def heldout():
    with open(os.path.join(DEMO, "heldout.jsonl")) as f:
        return [json.loads(line) for line in f if line.strip()]


def bin_or_fail():
    exe = engine_binary()
    if not (os.path.isfile(exe) and os.access(exe, os.X_OK)):
        pytest.fail(f"engine binary not found: {exe} (build it or set BITNETD_BIN)", pytrace=False)
    return exe


def score(pairs, entries):
    """pairs: predicted labels; returns (accuracy, agreement with the training tool)."""
    acc = sum(p == e["expected"] for p, e in zip(pairs, entries)) / len(entries)
    agree = sum(p == e["predicted"] for p, e in zip(pairs, entries)) / len(entries)
    return acc, agree


def report(kind, preds, entries):
    acc, agree = score(preds, entries)
    bad = [(e["prompt"], e["expected"], e["predicted"], p)
           for p, e in zip(preds, entries) if p != e["predicted"]][:10]
    msg = (f"{kind}: accuracy {acc:.4f} (min {MIN_ACCURACY}), agreement with the training tool "
           f"{agree:.4f} (min {MIN_AGREEMENT}) on {len(entries)} readings; disagreements "
           f"(prompt, expected, training tool, bitnetd): {bad}")
    print(msg)
    assert acc >= MIN_ACCURACY, msg
    assert agree >= MIN_AGREEMENT, msg


def test_model_files_and_heldout_set():
    entries = heldout()
    assert len(entries) >= MIN_READINGS
    assert {e["task"] for e in entries} == {"greenhouse", "machine"}
    with open(os.path.join(DEMO, "SHA256SUMS")) as f:
        sums = dict(reversed(line.split()) for line in f if line.strip())
    h = hashlib.sha256(open(MODEL, "rb").read()).hexdigest()
    assert sums.get("demo.gguf") == h, "models/demo/SHA256SUMS does not match demo.gguf"
    # The training tool's own predictions must themselves be accurate (or the test is vacuous).
    for e in entries:
        assert abs(sum(e["probabilities"].values()) - 1) < 1e-3
        assert e["predicted"] == max(e["probabilities"], key=e["probabilities"].get)


def demo_routes():
    """(route name → (prompt template, labels)) of the decide routes in etc/demo.yaml (no YAML
    library needed)."""
    text = open(CONFIG).read()
    routes = {}
    for block in re.split(r"\n  - name: ", text)[1:]:
        name = block.split("\n", 1)[0].strip()
        m = re.search(r"\n    labels: \[(.*)\]", block)
        if not m:
            continue  # the extract route
        prompt = re.search(r'\n    prompt: "(.*)"\n', block).group(1)
        labels = [x.strip() for x in m.group(1).split(",")]
        routes[name] = (prompt, labels)
    return routes


def json_number(x):
    """bitnetd's rendering of a JSON number in a template (integral values without a fraction)."""
    return str(int(x)) if float(x) == int(x) else repr(float(x))


def test_demo_config_renders_the_trained_prompts():
    routes = demo_routes()
    for e in heldout():
        tmpl, labels = routes[e["task"]]
        rendered = re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: json_number(e["fields"][m.group(1)]), tmpl)
        # The config ends the prompt with the space that the CLI puts in front of each label.
        assert rendered == e["prompt"] + " ", (rendered, e["prompt"])
        assert [" " + l for l in labels] == e["labels"]


def test_decide_cli_accuracy():
    exe = bin_or_fail()
    entries = heldout()

    def one(e):
        cmd = [exe, "decide", "--model", MODEL, "--threads", "1", "--prompt", e["prompt"],
               "--labels", ",".join(e["labels"]), "--json"]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, f"{cmd}: exit {p.returncode}\n{p.stderr}"
        j = json.loads(p.stdout)
        probs = j["probabilities"]
        assert abs(sum(probs.values()) - 1) < 1e-6
        return j["label"].strip()

    with ThreadPoolExecutor(max_workers=2) as ex:
        preds = list(ex.map(one, entries))
    report("decide CLI", preds, entries)


# ------------------------------------------------------------------------ daemon + real broker
# (the `broker` fixture is in conftest.py)

def test_daemon_accuracy_through_broker(broker):
    exe = bin_or_fail()
    port, d = broker
    entries = heldout()
    env = dict(os.environ, BITNETD_DEMO_MODEL=MODEL, BITNETD_DEMO_PORT=str(port),
               BITNETD_DEMO_HOST="127.0.0.1", BITNETD_DEMO_THREADS="2")
    dlog = open(os.path.join(d, "bitnetd.log"), "w")
    daemon = subprocess.Popen([exe, "run", "--config", CONFIG], cwd=REPO, env=env,
                              stdout=dlog, stderr=subprocess.STDOUT)
    sub = None
    try:
        # Wait for the daemon's retained "online" status: it has subscribed by then.
        st = subprocess.run(["mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), "-t", "bitnetd/status",
                             "-C", "1", "-W", "20"], capture_output=True, text=True)
        assert st.stdout.strip() == "online", f"no online status: {st.stdout!r} {st.stderr!r}; " \
            f"daemon log: {open(os.path.join(d, 'bitnetd.log')).read()[-2000:]}"
        sub = subprocess.Popen(["mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), "-q", "1",
                                "-t", "demo/+/+/decision", "-t", "bitnetd/error", "-v",
                                "-C", str(len(entries)), "-W", "90"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(0.5)
        for i, e in enumerate(entries):
            payload = json.dumps(dict(e["fields"], schema=1))
            subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "-q", "1",
                            "-t", f"demo/{e['task']}/r{i}", "-m", payload], check=True, timeout=10)
        out, err = sub.communicate(timeout=120)
    finally:
        daemon.terminate()
        try:
            daemon.wait(timeout=15)
        except subprocess.TimeoutExpired:
            daemon.kill()
        if sub and sub.poll() is None:
            sub.kill()
        dlog.close()
    got = {}
    for line in out.splitlines():
        topic, _, body = line.partition(" ")
        j = json.loads(body)
        assert topic != "bitnetd/error", f"daemon error: {body}"
        m = re.fullmatch(r"demo/(\w+)/r(\d+)/decision", topic)
        assert m, topic
        assert j["input_topic"] == f"demo/{m.group(1)}/r{m.group(2)}"
        probs = j["probabilities"]
        assert abs(sum(probs.values()) - 1) < 1e-4
        # The label may be "unsure" (min_confidence in etc/demo.yaml); judge the best label.
        got[int(m.group(2))] = max(probs, key=probs.get)
    assert len(got) == len(entries), f"{len(got)} decisions for {len(entries)} readings; {err}"
    report("daemon", [got[i] for i in range(len(entries))], entries)

"""Schema-constrained generation (`bitnetd generate --schema`), checked from outside the engine.

On random models (whose unconstrained output is garbage) every output must parse and validate
against its schema with an independent validator (Python `jsonschema`); at temperature 0 every
sampled token must be the highest-logit token among those the schema allowed (logits from
`bitnetd logits` for the same ids); at temperature 1 every enum value and both booleans must
occur and string and array lengths must vary.
"""

import json
import os
import re
import subprocess
import tempfile

import jsonschema
import numpy as np
import pytest

from conftest import engine_binary, run_engine

SCHEMAS = [
    {"enum": ["on", "off", "auto"]},
    {"const": {"a": [1, 2, None]}},
    {"type": "boolean"},
    {"type": "null"},
    {"type": "integer", "minimum": -50, "maximum": 50},
    {"type": "integer", "minimum": 100, "maximum": 1000, "multipleOf": 25},
    {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
    {"type": "number", "minimum": -2.5, "maximum": 1e4},
    {"type": "string", "minLength": 3, "maxLength": 8},
    {"type": "string", "maxLength": 20},
    {"type": ["integer", "null"], "minimum": 0},
    {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 9}, "minItems": 1, "maxItems": 5},
    {"type": "array", "items": {"enum": ["x", "y", 3, True]}, "maxItems": 4},
    {"type": "object", "properties": {
        "house": {"type": "integer", "minimum": 1, "maximum": 12},
        "action": {"enum": ["ventilate", "heat", "water", "nothing"]},
        "level": {"type": "integer", "minimum": 0, "maximum": 100, "multipleOf": 10}},
     "required": ["house", "action"], "additionalProperties": False},
    {"type": "object", "properties": {
        "room": {"type": "string", "minLength": 1, "maxLength": 12},
        "on": {"type": "boolean"},
        "dim": {"type": "number", "minimum": 0, "maximum": 1}},
     "required": ["room", "on"]},
    {"type": "object", "properties": {
        "severity": {"enum": ["low", "medium", "high"]},
        "reasons": {"type": "array", "items": {"type": "string", "maxLength": 10}, "maxItems": 3},
        "ok": {"type": "boolean"}},
     "required": ["severity", "reasons", "ok"]},
    {"type": "object", "properties": {
        "valve": {"type": "integer", "minimum": 1, "maximum": 8},
        "open_s": {"type": "integer", "exclusiveMinimum": 0, "maximum": 600}},
     "required": ["valve", "open_s"]},
    {"anyOf": [
        {"type": "object", "properties": {"kind": {"const": "set"}, "value": {"type": "number"}}, "required": ["kind", "value"]},
        {"type": "object", "properties": {"kind": {"const": "toggle"}}, "required": ["kind"]}]},
    {"oneOf": [{"type": "string", "maxLength": 4}, {"type": "integer"}, {"type": "null"}]},
    {"$defs": {"item": {"type": "object", "properties": {"id": {"type": "integer", "minimum": 0},
                                                         "tags": {"type": "array", "items": {"$ref": "#/$defs/tag"}, "maxItems": 2}},
                        "required": ["id"]},
               "tag": {"enum": ["a", "b"]}},
     "type": "array", "items": {"$ref": "#/$defs/item"}, "minItems": 1, "maxItems": 3},
    {"$defs": {"node": {"type": "object", "properties": {"v": {"type": "integer", "minimum": 0, "maximum": 9},
                                                         "next": {"$ref": "#/$defs/node"}}, "required": ["v"]}},
     "$ref": "#/$defs/node"},
    {"type": "object", "properties": {"grüße": {"type": "string", "maxLength": 3}, "a\"b/c": {"type": "integer"},
                                      "title": {"type": "string"}}, "required": ["grüße", "a\"b/c"],
     "title": "annotations are ignored", "description": "…", "$comment": "x", "examples": [{}]},
    True,
]
WORDS = ["too hot", "dry soil", "cold night", "open the valve", "fan", "greenhouse", "house", "lights off",
         "water now", "heat up", "humid", "frost", "sunny", "kitchen", "cellar", "pump", "window", "alarm"]
RUNS_PER_SCHEMA = 46  # 23 schemas × 46 ≈ 1,060 generations


@pytest.fixture(scope="module")
def models():
    d = tempfile.mkdtemp(prefix="bitnetd-extract-")
    out = []
    # I2_S with byte-level BPE, TQ2_0, and a SentencePiece vocabulary (▁ and <0xHH> tokens).
    for seed, extra in [(11, []), (12, ["--type", "tq2_0", "--embd", "256", "--ff", "256", "--heads", "4", "--kv-heads", "4"]),
                        (13, ["--arch", "bitnet", "--tokenizer", "llama"])]:
        path = os.path.join(d, f"random-{seed}.gguf")
        run_engine(["dev", "make-model", "--out", path, "--seed", seed, "--vocab", "2000"] + extra)
        out.append(path)
    return d, out


def generate(model, schema_path, seed, temperature, max_tokens=64, prompt="Request: too hot in house 2. Command:", trace=None):
    args = [engine_binary(), "generate", "--model", model, "--threads", "1", "--prompt", prompt, "--schema", schema_path,
            "--max-tokens", str(max_tokens), "--temperature", str(temperature), "--seed", str(seed),
            # Plain sampling: every allowed token keeps its probability (no top-k/p, min-p cut).
            "--top-k", "0", "--top-p", "1", "--min-p", "0"]
    if trace:
        args += ["--constraint-trace", trace]
    p = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.endswith("\n") and p.stdout.count("\n") == 1, repr(p.stdout)
    return p.stdout[:-1], p.stderr


def write_schema(d, i, schema):
    path = os.path.join(d, f"schema-{i}.json")
    with open(path, "w") as f:
        json.dump(schema, f, ensure_ascii=False)
    return path


def test_every_output_parses_and_validates(models):
    d, paths = models
    outputs = {}
    for i, schema in enumerate(SCHEMAS):
        sp = write_schema(d, i, schema)
        validator = jsonschema.Draft202012Validator(schema if schema is not True else {})
        got = []
        for k in range(RUNS_PER_SCHEMA):
            # A different request each run: a random model's next-token distribution is peaked,
            # so which values are likely depends on the context.
            prompt = f"Request {k}: {WORDS[k % len(WORDS)]} in {WORDS[(k * 7 + i) % len(WORDS)]} {k % 13}. Command:"
            text, _ = generate(paths[k % 3], sp, seed=1000 + k, temperature=1.0 if k % 4 else 0.6,
                               max_tokens=48 + (k % 5) * 16, prompt=prompt)
            value = json.loads(text)  # parses
            errors = list(validator.iter_errors(value))
            assert not errors, f"schema {i}: {text!r} → {errors[0].message}"
            outside_strings = re.sub(r'"(\\.|[^"\\])*"', '""', text)
            assert not re.search(r"\s", outside_strings), f"not compact: {text!r}"
            got.append(value)
        outputs[i] = got
    # Temperature 1 explores: every enum value, both booleans; lengths vary.
    assert {v for v in outputs[0]} == {"on", "off", "auto"}
    assert {v for v in outputs[2]} == {True, False}
    assert {v["action"] for v in outputs[13]} == {"ventilate", "heat", "water", "nothing"}
    assert {v["on"] for v in outputs[14]} == {True, False}
    # A random model seldom closes a string early (its quote token is one of ~2000), so string
    # lengths are counted over all string schemas; arrays and recursion vary on their own.
    string_lengths = {len(v) for v in outputs[8] + outputs[9]} | {len(v["room"]) for v in outputs[14]}
    assert len(string_lengths) >= 4, string_lengths
    assert len({len(v) for v in outputs[11]}) >= 3, outputs[11]
    assert len({len(v) for v in outputs[19]}) >= 3, outputs[19]
    assert len({json.dumps(v).count("next") for v in outputs[20]}) >= 3, outputs[20]
    assert {v["kind"] for v in outputs[17]} == {"set", "toggle"}
    assert {type(v).__name__ for v in outputs[18]} == {"str", "int", "NoneType"}


def test_greedy_picks_the_best_allowed_token(models):
    d, paths = models
    for model, i in [(paths[0], 8), (paths[0], 13), (paths[0], 15), (paths[0], 19), (paths[2], 13), (paths[2], 9)]:
        sp = write_schema(d, 100 + i, SCHEMAS[i])
        trace_path = os.path.join(d, f"trace-{i}-{os.path.basename(model)}.jsonl")
        prompt = "Request: too hot in house 2. Command:"
        text, _ = generate(model, sp, seed=1, temperature=0, max_tokens=48, prompt=prompt, trace=trace_path)
        steps = [json.loads(l) for l in open(trace_path)]
        assert steps, "no trace"
        prompt_ids = [int(x) for x in run_engine(["tokenize", "--model", model, "--text", prompt]).stdout.split()]
        ids = prompt_ids + [s["token"] for s in steps]
        out = os.path.join(d, f"logits-{i}-{os.path.basename(model)}.bin")
        # The same passes as the generation: forced runs as one batch each, sampled tokens alone.
        chunks = []
        for s in steps:
            if chunks and chunks[-1][0] == s["pass"]:
                chunks[-1][1] += 1
            else:
                chunks.append([s["pass"], 1])
        run_engine(["logits", "--model", model, "--threads", "1", "--token-ids", ",".join(map(str, ids)), "--out", out,
                    "--prompt-len", len(prompt_ids), "--chunks", ",".join(str(n) for _, n in chunks)])
        logits = np.fromfile(out, dtype=np.float32).reshape(len(ids), -1)
        sampled = 0
        for k, s in enumerate(steps):
            if s["forced"]:
                continue
            sampled += 1
            row = logits[len(prompt_ids) + k - 1]
            allowed = np.array(s["allowed"])
            allowed = allowed[allowed < row.shape[0]]
            best = allowed[np.argmax(row[allowed])]
            # The same passes give the same logits; only an exact tie may pick another id.
            assert s["token"] == best or row[s["token"]] == row[best], \
                f"schema {i} step {k}: chose {s['token']} ({row[s['token']]}) but {best} ({row[best]}) was allowed"
            assert len(allowed) < row.shape[0], "the mask allowed every token"
        assert sampled > 0
        # The trace's tokens are the output.
        json.loads(text)


def test_cli_refusals(models):
    d, paths = models
    sp = write_schema(d, 200, {"type": "object", "properties": {"a": {"type": "string", "minLength": 30}}, "required": ["a"]})
    exe = engine_binary()
    p = subprocess.run([exe, "generate", "--model", paths[0], "--prompt", "x", "--schema", sp, "--max-tokens", "10"],
                       capture_output=True, text=True)
    assert p.returncode == 1 and "below the schema's shortest output, 38 bytes" in p.stderr, p.stderr
    for extra in (["--ignore-eos"], ["--stop", "}"]):
        p = subprocess.run([exe, "generate", "--model", paths[0], "--prompt", "x", "--schema", sp] + extra,
                           capture_output=True, text=True)
        assert p.returncode != 0 and "does not apply" in p.stderr, p.stderr
    bad = write_schema(d, 201, {"type": "string", "format": "email"})
    p = subprocess.run([exe, "generate", "--model", paths[0], "--prompt", "x", "--schema", bad], capture_output=True, text=True)
    assert p.returncode == 1 and "/format: unknown or unsupported keyword 'format'" in p.stderr, p.stderr

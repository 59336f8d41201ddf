#!/usr/bin/env python3
"""Writes the cold-room example of bitnetd-train: train.jsonl (labelled readings with label noise)
and heldout.jsonl (readings never in train.jsonl, labelled by the rules without noise).

    python3 tools/train/examples/coldroom/generate.py      # deterministic (SEED); rewrites both

A chiller room's controller reports once a minute on coldroom/<room>/reading:
    air_c         air temperature, °C (0.1 °C)
    coil_c        evaporator coil temperature, °C (0.1 °C)
    humidity      relative humidity, % (whole %; no rule reads it: a field that does not matter)
    door_open_s   seconds the door has been open now (0 = closed)
    compressor_a  compressor current, A (0.1 A; below 1 A the compressor is off)

and the action (first matching rule wins; rules.txt says the same in bitnetd-train's syntax):
    alarm       air_c > 8                                   (the goods are at risk)
    service     compressor_a > 11, or compressor_a < 1 while air_c > 5
    close_door  door_open_s > 120
    defrost     coil_c < -12                                (ice on the evaporator)
    ok          otherwise

Classes are drawn with the weights of CLASS_WEIGHTS (ok is ~5x as common as service), then
readings are drawn until the rules give that class; BORDERLINE of them have one field pulled close
to a threshold. LABEL_NOISE of the training labels are flipped to another label.
"""

from __future__ import annotations

import json
import os
import random

SEED = 20261206
N_TRAIN = 6000
N_HELDOUT = 1000
LABEL_NOISE = 0.03
BORDERLINE = 0.3
CLASS_WEIGHTS = {"ok": 0.52, "close_door": 0.14, "defrost": 0.12, "alarm": 0.12, "service": 0.10}
ROOMS = ["dairy", "meat", "produce", "freezer-lobby", "bakery"]
# field → thresholds and how far a borderline value may lie from them
BORDERS = {"air_c": ([5, 8], 0.6), "coil_c": ([-12], 0.6), "door_open_s": ([120], 15),
           "compressor_a": ([1, 11], 0.5)}

HERE = os.path.dirname(os.path.abspath(__file__))


def action(r):
    if r["air_c"] > 8:
        return "alarm"
    if r["compressor_a"] > 11 or (r["compressor_a"] < 1 and r["air_c"] > 5):
        return "service"
    if r["door_open_s"] > 120:
        return "close_door"
    if r["coil_c"] < -12:
        return "defrost"
    return "ok"


def _raw(rng):
    return {
        "air_c": rng.gauss(2.5, 1.5) if rng.random() < 0.6 else rng.uniform(-2, 14),
        "coil_c": rng.uniform(-10, -1) if rng.random() < 0.6 else rng.uniform(-20, 0),
        "humidity": rng.uniform(55, 99),
        "door_open_s": 0 if rng.random() < 0.5 else rng.uniform(1, 600),
        "compressor_a": (rng.uniform(3.5, 9.5) if rng.random() < 0.6 else
                         rng.uniform(0, 0.9) if rng.random() < 0.5 else rng.uniform(0, 15)),
    }


def _finish(raw):
    return {"air_c": round(min(max(raw["air_c"], -5), 20), 1),
            "coil_c": round(min(max(raw["coil_c"], -25), 5), 1),
            "humidity": int(round(raw["humidity"])),
            "door_open_s": int(round(max(raw["door_open_s"], 0))),
            "compressor_a": round(min(max(raw["compressor_a"], 0), 16), 1)}


def sample(rng, want):
    while True:
        raw = _raw(rng)
        if rng.random() < BORDERLINE:
            f = rng.choice(sorted(BORDERS))
            points, width = BORDERS[f]
            raw[f] = rng.choice(points) + rng.uniform(-width, width)
        r = _finish(raw)
        if action(r) == want:
            return r


def key(r):
    return tuple(sorted(r.items()))


def records(rng, n, noise, avoid):
    labels = list(CLASS_WEIGHTS)
    out, seen = [], set(avoid)
    while len(out) < n:
        want = rng.choices(labels, weights=[CLASS_WEIGHTS[l] for l in labels])[0]
        r = sample(rng, want)
        if key(r) in seen:
            continue
        seen.add(key(r))
        label = want
        if noise and rng.random() < noise:
            label = rng.choice([l for l in labels if l != want])
        out.append({"reading": r, "label": label,
                    "topic": f"coldroom/{rng.choice(ROOMS)}/reading"})
    return out


def main():
    rng = random.Random(SEED)
    train = records(rng, N_TRAIN, LABEL_NOISE, ())
    heldout = records(rng, N_HELDOUT, 0.0, [key(e["reading"]) for e in train])
    for name, rows in (("train.jsonl", train), ("heldout.jsonl", heldout)):
        with open(os.path.join(HERE, name), "w") as f:
            for e in rows:
                f.write(json.dumps(e) + "\n")
    flipped = sum(e["label"] != action(e["reading"]) for e in train)
    counts = {l: sum(e["label"] == l for e in train) for l in CLASS_WEIGHTS}
    print(f"train.jsonl: {len(train)} readings, {flipped} labels flipped "
          f"({100 * flipped / len(train):.1f} %), labels {counts}")
    print(f"heldout.jsonl: {len(heldout)} readings, labels "
          f"{ {l: sum(e['label'] == l for e in heldout) for l in CLASS_WEIGHTS} }")


if __name__ == "__main__":
    main()

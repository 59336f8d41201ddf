"""Synthetic sensor-decision corpus for the bitnetd demo model (deterministic for a given seed).

Two tasks, each a rule over noisy sensor readings:

greenhouse  temperature (°C), humidity (%), soil moisture (%), light (klux)
            → heat | water | ventilate | nothing   (first matching rule wins)
              heat       temperature < 12, or temperature < 15 at night (light < 1 klux)
              water      soil < 25, or soil < 35 on a hot sunny day (temperature > 28 and light > 40)
              ventilate  temperature > 30 or humidity > 85
              nothing    otherwise
machine     vibration (mm/s RMS), bearing temperature (°C), motor current (A)
            → stop | inspect | normal
              stop       vibration > 7.1 or temperature > 85 or current > 15
              inspect    vibration > 2.8 or temperature > 70 or current > 12
              normal     otherwise

Classes are drawn evenly, then readings are drawn until the rule gives that class; a share of
readings is pulled close to a threshold (borderline cases). Training labels are flipped to another
label with probability LABEL_NOISE; held-out labels are the rule's own answer.

Numbers are written the way bitnetd renders JSON numbers in a prompt template: integers without a
fraction ("31"), others in their shortest form ("31.5", "4.25").
"""

from __future__ import annotations

import random

LABEL_NOISE = 0.015
BORDERLINE = 0.35

TASKS = {
    "greenhouse": {
        "template": ("greenhouse: temperature {temperature} C, humidity {humidity} %, "
                     "soil {soil} %, light {light} klux. action:"),
        "labels": ["water", "ventilate", "heat", "nothing"],
        "fields": ["temperature", "humidity", "soil", "light"],
        "topic": "demo/greenhouse/+",
    },
    "machine": {
        "template": ("machine: vibration {vibration} mm/s, temperature {temperature} C, "
                     "current {current} A. status:"),
        "labels": ["normal", "inspect", "stop"],
        "fields": ["vibration", "temperature", "current"],
        "topic": "demo/machine/+",
    },
}


def greenhouse_rule(r):
    t, h, s, l = r["temperature"], r["humidity"], r["soil"], r["light"]
    if t < 12 or (t < 15 and l < 1):
        return "heat"
    if s < 25 or (s < 35 and t > 28 and l > 40):
        return "water"
    if t > 30 or h > 85:
        return "ventilate"
    return "nothing"


def machine_rule(r):
    v, t, c = r["vibration"], r["temperature"], r["current"]
    if v > 7.1 or t > 85 or c > 15:
        return "stop"
    if v > 2.8 or t > 70 or c > 12:
        return "inspect"
    return "normal"


RULES = {"greenhouse": greenhouse_rule, "machine": machine_rule}

# Thresholds per field, for borderline sampling.
BORDERS = {
    "greenhouse": {"temperature": [12, 15, 28, 30], "humidity": [85], "soil": [25, 35],
                   "light": [1, 40]},
    "machine": {"vibration": [2.8, 7.1], "temperature": [70, 85], "current": [12, 15]},
}


def fmt(x: float) -> str:
    """Like bitnetd's JSON.format: integral values without a fraction, else shortest form."""
    if x == int(x):
        return str(int(x))
    return repr(float(x))


def _q(rng, x, lo, hi, decimals_choices):
    d = rng.choice(decimals_choices)
    x = min(max(x, lo), hi)
    return round(x, d) if d else float(round(x))


def _greenhouse_raw(rng):
    # A plausible greenhouse state: day or night, season-ish temperature.
    night = rng.random() < 0.3
    t = rng.uniform(-5, 45) if rng.random() < 0.6 else rng.gauss(22, 8)
    light = rng.uniform(0, 1.5) if night else (rng.uniform(0.5, 95) if rng.random() < 0.7
                                                else rng.gauss(45, 20))
    return {"temperature": t, "humidity": rng.uniform(15, 100), "soil": rng.uniform(0, 80),
            "light": light}


def _machine_raw(rng):
    return {"vibration": rng.uniform(0.1, 14) if rng.random() < 0.6 else abs(rng.gauss(3, 2.5)),
            "temperature": rng.uniform(20, 110) if rng.random() < 0.6 else rng.gauss(65, 15),
            "current": rng.uniform(0.5, 25) if rng.random() < 0.6 else abs(rng.gauss(11, 4))}


RANGES = {
    "greenhouse": {"temperature": (-10, 49.9, [1, 1, 1, 1, 0, 2]), "humidity": (5, 100, [0, 0, 0, 1]),
                   "soil": (0, 99, [0, 0, 0, 1]), "light": (0, 99.9, [1, 1, 1, 0, 2])},
    "machine": {"vibration": (0, 19.9, [1, 1, 1, 2, 0]), "temperature": (15, 120, [1, 1, 1, 0]),
                "current": (0, 29.9, [1, 1, 1, 2, 0])},
}


def _finish(task, raw, rng):
    out = {}
    for f, x in raw.items():
        lo, hi, decs = RANGES[task][f]
        out[f] = _q(rng, x, lo, hi, decs)
    return out


def sample(task, rng, want=None):
    raw_fn = _greenhouse_raw if task == "greenhouse" else _machine_raw
    for _ in range(10000):
        raw = raw_fn(rng)
        if rng.random() < BORDERLINE:
            f = rng.choice(list(BORDERS[task]))
            b = rng.choice(BORDERS[task][f])
            width = 0.6 if b < 10 else 2.0
            raw[f] = b + rng.uniform(-width, width)
        r = _finish(task, raw, rng)
        if want is None or RULES[task](r) == want:
            return r
    raise RuntimeError("could not sample " + str(want))


def prompt(task, reading):
    return TASKS[task]["template"].format(**{k: fmt(v) for k, v in reading.items()})


def make_split(n_per_task, seed, noise):
    """List of dicts {task, fields, prompt, label (possibly noisy), rule_label}."""
    rng = random.Random(seed)
    out = []
    for task in TASKS:
        labels = TASKS[task]["labels"]
        for i in range(n_per_task):
            want = labels[i % len(labels)]
            r = sample(task, rng, want)
            lab = RULES[task](r)
            noisy = lab
            if noise and rng.random() < noise:
                noisy = rng.choice([x for x in labels if x != lab])
            out.append({"task": task, "fields": r, "prompt": prompt(task, r), "label": noisy,
                        "rule_label": lab})
    rng.shuffle(out)
    return out


def make_corpus(seed=1234, n_train_per_task=60000, n_test_per_task=400):
    train = make_split(n_train_per_task, seed, LABEL_NOISE)
    seen = {e["prompt"] for e in train}
    test = [e for e in make_split(n_test_per_task * 2, seed + 1, 0.0) if e["prompt"] not in seen]
    # Keep n_test_per_task per task, never a prompt that occurs in training.
    kept, count = [], {t: 0 for t in TASKS}
    for e in test:
        if count[e["task"]] < n_test_per_task:
            kept.append(e)
            count[e["task"]] += 1
    return train, kept


if __name__ == "__main__":
    import collections
    tr, te = make_corpus(n_train_per_task=2000, n_test_per_task=400)
    for e in tr[:8]:
        print(e["prompt"], e["label"])
    print(collections.Counter((e["task"], e["label"]) for e in tr))
    print(collections.Counter((e["task"], e["rule_label"]) for e in te))


# Extra text for the tokenizer only (never for the model): a general sensor/IoT vocabulary and every
# number of 1–3 digits, so that other prompts and readings tokenize into sensible pieces.
_WORDS = ("the a an is are was at on in of to and or not no yes it this that there nobody home "
          "door window kitchen garden garage bedroom bathroom office hall room house barn field "
          "greenhouse machine motor pump fan heater valve sensor reading value temperature "
          "humidity pressure soil moisture light lux klux vibration current voltage power energy "
          "battery level water air flow rate speed rpm noise sound motion smoke gas leak alarm "
          "alert normal warning critical error status state open closed on off high low ok "
          "answer action decision label question short should we do what why when how now today "
          "night day morning evening hour minute second time date week month year average mean "
          "minimum maximum count last first window trend rising falling stable above below "
          "between degrees percent celsius fahrenheit watts amps volts hertz ppm inspect stop "
          "ventilate heat cool dry wet hot cold warm comfortable nothing check start restart "
          "device daemon broker message topic payload model token").split()
_UNITS = ["C", "F", "%", "lux", "klux", "mm/s", "A", "V", "W", "kW", "kWh", "Hz", "rpm", "ppm",
          "hPa", "bar", "m/s", "L/min", "dB"]


def tokenizer_texts(seed):
    rng = random.Random(seed)
    out = []
    for _ in range(20000):
        n = rng.randint(4, 14)
        words = []
        for _ in range(n):
            x = rng.random()
            if x < 0.15:
                words.append(fmt(round(rng.uniform(-20, 999), rng.choice([0, 1, 2]))))
                words.append(rng.choice(_UNITS))
            else:
                w = rng.choice(_WORDS)
                words.append(w.capitalize() if rng.random() < 0.1 else w)
        s = " ".join(words)
        out.append(s[0].upper() + s[1:] + rng.choice([".", "?", ":", "!", ". Answer:"]))
    for k in range(3):
        out.extend(str(i) for i in range(1000))
    return out

"""Synthetic greenhouse-request corpus for the extraction demo model (deterministic for a seed).

A request is one short line of free text about one of nine greenhouses; the answer is the command
object of models/demo/extract-schema.json, written compactly in schema order:

    "way too hot in greenhouse 2"              → {"house":2,"action":"ventilate","level":100}
    "could you turn the heater on a bit, gh7"  → {"house":7,"action":"heat","level":30}
    "set the sprinklers in house four to 40%"  → {"house":4,"action":"water","level":40}
    "switch off the grow lights in house 5"    → {"house":5,"action":"light","level":0}
    "all good in the third greenhouse"         → {"house":3,"action":"nothing","level":0}

The meaning is fixed by these rules:

action  what the request asks for: too hot / humid / stuffy or "open the vents" → ventilate; too
        cold or "turn on the heater" → heat; dry soil or "run the irrigation" → water; too bright
        or "close the shade screens" → shade; too dark or "turn on the grow lights" → light;
        "everything is fine" → nothing.
level   an explicit percentage ("to 40%", "at sixty percent", "level 70") is taken as it is; off,
        stop, "close the vents" and nothing → 0; otherwise by intensity:
        mild ("a bit", "slightly", "a little", …) → 30, half ("halfway", "medium") → 50,
        plain (no intensity, or "too") → 80, strong ("very", "way too", "fully", "max",
        "freezing", "bone dry", …) → 100.
house   1–9, written as a digit, a word ("three"), an ordinal ("the 3rd greenhouse"), "gh3", "#3",
        "number three", …

Every request comes from a sentence template (its phrasing) filled with a house phrase and words
from shared lexicons. Templates are split: those at index ≡ 3 (mod 4) in each list are held out,
so the evaluation requests are phrased in ways the model never saw (the lexicons — adjectives,
intensity words, device names, house phrases — are shared; templates are not). Some requests get
one typo, a case change, a filler or trailing punctuation.
"""

from __future__ import annotations

import json
import random

ACTIONS = ["ventilate", "heat", "water", "shade", "light", "nothing"]
DEVICE_ACTIONS = ACTIONS[:5]
TYPO_RATE = 0.12

# ----------------------------------------------------------------------------------- lexicons

WORDS = ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
ORDINALS = ["first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth"]
ORD_SHORT = ["1st", "2nd", "3rd", "4th", "5th", "6th", "7th", "8th", "9th"]

# House phrases: (format, kind) with {d} digit, {w} word, {o} ordinal, {s} short ordinal.
HOUSES = ["greenhouse {d}", "greenhouse {d}", "house {d}", "house {d}", "greenhouse {w}",
          "house {w}", "gh{d}", "gh {d}", "greenhouse #{d}", "house #{d}", "greenhouse number {d}",
          "greenhouse number {w}", "house number {w}", "greenhouse no. {d}", "house nr {d}",
          "the {o} greenhouse", "the {o} house", "the {s} greenhouse", "green house {d}",
          "#{d}", "gh #{d}", "glasshouse {d}", "hothouse {d}", "tunnel {d}"]

# Condition adjectives per action (they take intensity modifiers) and words that are strong by
# themselves (no modifier).
ADJ = {
    "ventilate": ["hot", "warm", "stuffy", "humid", "muggy", "steamy", "sticky", "stifling"],
    "heat": ["cold", "chilly", "nippy", "frosty", "icy"],
    "water": ["dry", "dried out", "parched", "thirsty"],
    "shade": ["bright", "sunny", "glaring", "sunlit"],
    "light": ["dark", "dim", "gloomy", "murky", "shadowy"],
}
STRONG_WORDS = {
    "ventilate": ["boiling", "sweltering", "baking", "roasting", "like an oven", "like a sauna"],
    "heat": ["freezing", "ice cold", "frigid", "bitterly cold", "like a fridge"],
    "water": ["bone dry", "dry as a desert", "completely dried out", "dusty dry"],
    "shade": ["blinding", "scorching bright", "dazzling"],
    "light": ["pitch dark", "pitch black", "totally dark", "dark as night"],
}
# Intensity modifiers of a condition: "{m} {adj}".
COND_MODS = {
    30: ["a bit", "a bit too", "slightly", "a little", "a little too", "somewhat", "kind of",
         "a tad", "a touch too", "mildly", "a little bit"],
    80: ["", "", "", "too", "too", "too"],
    100: ["very", "really", "way too", "extremely", "super", "so", "far too", "incredibly",
          "terribly", "much too", "seriously", "insanely"],
}
# "{H} needs …" phrases per action and intensity.
NEEDS = {
    "ventilate": {30: ["a bit of fresh air", "a little air", "some light airing"],
                  80: ["fresh air", "ventilation", "airing", "air"],
                  100: ["lots of fresh air", "a lot of ventilation", "maximum airflow"]},
    "heat": {30: ["a bit of heat", "a little warmth", "a little heating"],
             80: ["heat", "heating", "warming up", "warmth"],
             100: ["lots of heat", "a lot of heating", "maximum heat"]},
    "water": {30: ["a bit of water", "a little water", "a light watering", "a sip of water"],
              80: ["water", "watering", "irrigation"],
              100: ["lots of water", "a lot of water", "a thorough soaking", "a deep soak"]},
    "shade": {30: ["a bit of shade", "a little shade", "light shading"],
              80: ["shade", "shading", "the shades"],
              100: ["lots of shade", "full shade", "all the shade it can get"]},
    "light": {30: ["a bit of light", "a little light", "a little more light"],
              80: ["light", "lighting", "more light", "the grow lights"],
              100: ["lots of light", "a lot of light", "all the light it can get"]},
}
# Verb phrases that switch an action on (take an amount after them).
ON_VERBS = {
    "ventilate": ["open the vents", "open the windows", "turn on the fans", "run the fans",
                  "ventilate", "air it out", "start the fans", "open the roof vents",
                  "get some air in", "switch on the fans"],
    "heat": ["turn on the heater", "turn the heating on", "heat it up", "run the heater",
             "start the heating", "switch on the heaters", "fire up the heater", "warm it up",
             "turn up the heat"],
    "water": ["water the plants", "turn on the sprinklers", "run the irrigation", "water",
              "irrigate", "start the drip lines", "switch on the irrigation", "start watering",
              "turn the sprinklers on"],
    "shade": ["close the shade screens", "pull the shades", "draw the shade cloth",
              "lower the blinds", "put the shades down", "shade the plants",
              "roll out the shade net", "close the sun screens"],
    "light": ["turn on the grow lights", "switch the lamps on", "put the lights on",
              "turn the lights on", "run the grow lights", "switch on the lights",
              "start the lamps", "light it up"],
}
# Device nouns (for "set … to N%" and "turn off …").
DEVICES = {
    "ventilate": ["vents", "fans", "windows", "roof vents", "ventilation", "fan"],
    "heat": ["heater", "heating", "heaters", "boiler", "heat"],
    "water": ["sprinklers", "irrigation", "watering", "drip lines", "misters", "water"],
    "shade": ["shades", "shade screens", "blinds", "shade cloth", "sun screens", "shade net"],
    "light": ["grow lights", "lamps", "lights", "LEDs", "grow lamps", "lighting"],
}
# Phrases that switch an action off (level 0).
OFF_VERBS = {
    "ventilate": ["close the vents", "shut the windows", "close the roof vents", "stop the fans",
                  "stop ventilating"],
    "heat": ["stop heating", "kill the heater", "stop the heating", "cut the heat"],
    "water": ["stop watering", "stop the irrigation", "cut the water", "stop the sprinklers"],
    "shade": ["open the shades", "roll back the shade net", "raise the blinds", "stop shading"],
    "light": ["kill the lights", "stop the lamps", "lights out", "cut the lighting"],
}
# Amounts after an on-verb.
AMOUNTS = {
    30: ["a bit", "a little", "slightly", "a touch", "just a bit", "a little bit", "gently",
         "a tiny bit"],
    50: ["halfway", "half way", "to half", "at half power", "half", "to medium", "at medium"],
    80: [""],
    100: ["fully", "all the way", "to the max", "at full power", "full blast", "as much as possible",
          "at max", "completely", "at 100%"],
}
NUMBER_WORDS = {0: "zero", 10: "ten", 20: "twenty", 30: "thirty", 40: "forty", 50: "fifty",
                60: "sixty", 70: "seventy", 80: "eighty", 90: "ninety", 100: "a hundred"}
PERCENTS = ["{n}%", "{n}%", "{n} %", "{n} percent", "{n} per cent", "{nw} percent", "{n} pct"]
# Level words for "set … to X" (instead of a percentage).
SET_WORDS = {0: ["off", "zero"], 50: ["half", "medium"], 100: ["max", "full", "maximum"],
             30: ["low"], 80: ["high"]}
NOTHING_STATES = ["fine", "ok", "okay", "good", "great", "perfect", "all right", "alright",
                  "normal", "stable", "comfortable", "in good shape", "doing well"]

FILLERS_BEFORE = ["", "", "", "", "", "", "hey ", "hi, ", "ok so ", "urgent: ", "fyi ", "hello, ",
                  "quick one: ", "note: ", "um ", "so "]
FILLERS_AFTER = ["", "", "", "", "", "", ".", ".", "!", "!!", " please", " pls", " asap",
                 " thanks", " thx", " now", " right now", " :)", "..."]

# ---------------------------------------------------------------------------------- templates
# Slots: {H} house phrase, {Q} condition (modifier + adjective), {N} need phrase, {V} on-verb,
# {A} amount (with its leading space, or empty), {D} device noun, {P} percentage, {L} set word,
# {X} off phrase, {S} a nothing-state.

COND = [
    "{Q} in {H}", "it's {Q} in {H}", "{H} is {Q}", "{H}: {Q}", "it is {Q} in {H}",
    "{H} feels {Q}", "{H} is getting {Q}", "in {H} it's {Q}", "{Q} over in {H}",
    "hey, {H} is {Q}", "help, it's {Q} in {H}", "it got {Q} in {H}", "{H} seems {Q}",
    "{H} has been {Q} all morning", "{H} looks {Q} today", "feels {Q} in {H} right now",
    "report from {H}: {Q}", "it's getting {Q} in {H}, please fix", "{H} is {Q}, do something",
    "can you check {H}? it's {Q}", "{H} {Q}", "I think {H} is {Q}", "{H} is running {Q}",
    "noticed {H} is {Q}", "we have a problem in {H}, it's {Q}", "{H} - {Q}",
    "the air in {H} is {Q}", "inside {H} it is {Q}", "{Q} conditions in {H}",
    "it's {Q} inside {H}", "{H} became {Q}", "{H} is way off, it's {Q}", "{H} is {Q} again",
    "status {H}: {Q}", "my plants in {H} say it's {Q}", "why is {H} {Q}?",
    "{H} turned {Q} overnight", "it has gotten {Q} in {H}", "{H}? {Q}.", "{Q} at {H}",
    "{H} reads {Q}", "things are {Q} in {H}", "{H} is feeling {Q} today",
    "sensor in {H} says {Q}", "the climate in {H} is {Q}", "walked into {H}, {Q}",
    "{H} stays {Q}",
]
NEED = [
    "{H} needs {N}", "{N} for {H}", "{H} could use {N}", "give {H} {N}", "{H} wants {N}",
    "{H} needs {N} please", "please give {H} {N}", "{H}: needs {N}", "{N} needed in {H}",
    "I think {H} needs {N}", "the plants in {H} need {N}", "{H} is asking for {N}",
    "{H} requires {N}", "{N} in {H}", "{H} should get {N}", "can {H} get {N}?",
]
ON = [
    "{V}{A} in {H}", "{V} in {H}{A}", "please {V} in {H}{A}", "{H}: {V}{A}",
    "{H}, {V}{A} please", "can you {V} in {H}{A}?", "could you {V}{A} in {H}",
    "I need you to {V} in {H}{A}", "{V} for {H}{A}", "in {H}, {V}{A}", "{V}{A}, {H}",
    "{H} needs you to {V}{A}", "time to {V} in {H}{A}", "let's {V} in {H}{A}",
    "would you {V} in {H}{A}", "{V} at {H}{A}", "go {V} in {H}{A}", "{H} - {V}{A}",
    "pls {V}{A} in {H}", "{V}{A} over in {H}", "quickly {V} in {H}{A}", "{H} {V}{A}",
    "you should {V} in {H}{A}", "{V} in {H}{A} for a while", "can we {V}{A} in {H}?",
    "{V} inside {H}{A}", "kindly {V} in {H}{A}", "{H}: please {V}{A}",
    "could someone {V} in {H}{A}", "{V}{A} in {H} when you can", "{V} right away in {H}{A}",
    "{H} please {V}{A}",
]
SET = [
    "set the {D} in {H} to {P}", "{D} in {H} to {P}", "{H} {D} {P}", "put the {D} in {H} at {P}",
    "{H}: {D} at {P}", "set {H} {D} to {P}", "{D} {P} in {H}", "{H} {D} to {P} please",
    "I want the {D} in {H} at {P}", "adjust the {D} of {H} to {P}", "change {H} {D} to {P}",
    "{D} for {H}: {P}", "make the {D} in {H} {P}", "{H}, set {D} {P}", "run the {D} in {H} at {P}",
    "bring the {D} in {H} to {P}", "can you set the {D} in {H} to {P}?", "{D} level {H}: {P}",
    "{H} needs the {D} at {P}", "switch the {D} in {H} to {P}",
]
SET_LEVEL_WORD = [
    "set the {D} in {H} to {L}", "{H} {D} {L}", "{D} in {H} to {L}", "put {H} {D} on {L}",
    "{H}: {D} {L}", "turn the {D} in {H} to {L}", "{D} {L} in {H}", "can you set {H} {D} to {L}",
]
OFF = [
    "turn off the {D} in {H}", "switch the {D} off in {H}", "{H}: {D} off", "{D} off in {H}",
    "shut off the {D} in {H}", "{H}, turn the {D} off", "no more {D} in {H}",
    "please switch off the {D} in {H}", "{H} {D} off", "can you turn the {D} off in {H}?",
    "disable the {D} in {H}", "kill the {D} in {H}", "{H} doesn't need the {D} anymore",
    "the {D} in {H} can go off", "power down the {D} in {H}", "{D} in {H} off please",
]
OFF_PHRASE = [
    "{X} in {H}", "{H}: {X}", "please {X} in {H}", "{X} in {H} now", "{H}, {X}",
    "can you {X} in {H}?", "{X} over in {H}", "time to {X} in {H}", "{H} {X}",
    "{X} for {H}", "could you {X} in {H}", "go {X} in {H}",
]
NOTHING = [
    "all good in {H}", "{H} is {S}", "{H} looks {S}", "nothing to do in {H}", "no action for {H}",
    "{H}: all {S}", "just checking {H}, everything is {S}", "{H} is {S} today",
    "leave {H} as it is", "don't change anything in {H}", "{H} is {S}, leave it",
    "everything in {H} is {S}", "{H} seems {S}", "no problems in {H}", "{H}: {S}",
    "{H} feels {S}", "checked {H}, {S}", "{H} needs nothing", "{H} is {S}, no action",
    "nothing needed for {H}", "status {H}: {S}", "{H} can stay as is", "all {S} in {H}",
    "{H} is {S} right now",
]

FAMILIES = {"cond": COND, "need": NEED, "on": ON, "set": SET, "setword": SET_LEVEL_WORD,
            "off": OFF, "offphrase": OFF_PHRASE, "nothing": NOTHING}
# Share of requests per family (an action is drawn evenly within a family).
FAMILY_WEIGHTS = {"cond": 26, "need": 9, "on": 22, "set": 12, "setword": 5, "off": 8,
                  "offphrase": 6, "nothing": 12}


def template_split(family):
    """(training templates, held-out templates) of a family: every 4th template is held out."""
    ts = FAMILIES[family]
    return ([t for i, t in enumerate(ts) if i % 4 != 3], [t for i, t in enumerate(ts) if i % 4 == 3])


# ------------------------------------------------------------------------------------ sampling

def house_phrase(rng, house):
    f = rng.choice(HOUSES)
    return f.format(d=house, w=WORDS[house - 1], o=ORDINALS[house - 1], s=ORD_SHORT[house - 1])


def percent(rng, n):
    return rng.choice(PERCENTS).format(n=n, nw=NUMBER_WORDS[n])


def _condition(rng, action):
    """(phrase, level) for a condition adjective with its intensity."""
    if rng.random() < 0.12:
        return rng.choice(STRONG_WORDS[action]), 100
    level = rng.choice([30, 80, 100])
    mod = rng.choice(COND_MODS[level])
    adj = rng.choice(ADJ[action])
    return (mod + " " + adj).strip(), level


def _typo(rng, text):
    words = text.split(" ")
    cand = [i for i, w in enumerate(words) if len(w) >= 4 and w.isalpha()]
    if not cand:
        return text
    i = rng.choice(cand)
    w = words[i]
    k = rng.randrange(1, len(w) - 1)
    kind = rng.randrange(4)
    if kind == 0:
        w = w[:k] + w[k + 1] + w[k] + w[k + 2:]          # swap two letters
    elif kind == 1:
        w = w[:k] + w[k + 1:]                             # drop one
    elif kind == 2:
        w = w[:k] + w[k] + w[k:]                          # double one
    else:
        w = w[:k] + rng.choice("aeioustnrl") + w[k + 1:]  # replace one
    words[i] = w
    return " ".join(words)


def _surface(rng, text):
    text = rng.choice(FILLERS_BEFORE) + text
    if not text.endswith(("?", ".", "!")):
        text += rng.choice(FILLERS_AFTER)
    if rng.random() < TYPO_RATE:
        text = _typo(rng, text)
    r = rng.random()
    if r < 0.25:
        text = text[0].upper() + text[1:]
    elif r < 0.29:
        text = text.upper()
    return text


def sample(rng, family, templates):
    """One request of `family` from one of `templates`: {request, expected, family, template}."""
    t = rng.choice(templates)
    house = rng.randint(1, 9)
    slots = {"H": house_phrase(rng, house)}
    if family == "nothing":
        action, level = "nothing", 0
        slots["S"] = rng.choice(NOTHING_STATES)
    else:
        action = rng.choice(DEVICE_ACTIONS)
        if family == "cond":
            slots["Q"], level = _condition(rng, action)
        elif family == "need":
            level = rng.choice([30, 80, 100])
            slots["N"] = rng.choice(NEEDS[action][level])
        elif family == "on":
            slots["V"] = rng.choice(ON_VERBS[action])
            if rng.random() < 0.25:
                level = rng.choice(range(10, 101, 10))
                amount = rng.choice(["to ", "at "]) + percent(rng, level)
            else:
                level = rng.choice([30, 30, 50, 80, 80, 100, 100])
                amount = rng.choice(AMOUNTS[level])
            slots["A"] = (" " + amount) if amount else ""
        elif family == "set":
            slots["D"] = rng.choice(DEVICES[action])
            level = rng.choice(range(0, 101, 10))
            slots["P"] = percent(rng, level) if rng.random() < 0.85 else f"level {level}"
        elif family == "setword":
            slots["D"] = rng.choice(DEVICES[action])
            level = rng.choice(list(SET_WORDS))
            slots["L"] = rng.choice(SET_WORDS[level])
        elif family == "off":
            slots["D"] = rng.choice(DEVICES[action])
            level = 0
        elif family == "offphrase":
            slots["X"] = rng.choice(OFF_VERBS[action])
            level = 0
        else:
            raise ValueError(family)
    text = _surface(rng, t.format(**slots))
    return {"request": text, "expected": {"house": house, "action": action, "level": level},
            "family": family, "template": f"{family}/{FAMILIES[family].index(t)}"}


def make_split(rng, n, held_out):
    fams = list(FAMILY_WEIGHTS)
    weights = [FAMILY_WEIGHTS[f] for f in fams]
    out = []
    for _ in range(n):
        f = rng.choices(fams, weights)[0]
        out.append(sample(rng, f, template_split(f)[1 if held_out else 0]))
    return out


def make_corpus(seed, n_train, n_test):
    """Training requests from the training templates (seed) and held-out requests from the held-out
    templates (seed + 1), none of whose texts occurs in training."""
    train = make_split(random.Random(seed), n_train, held_out=False)
    seen = {e["request"].lower() for e in train}
    test, rng = [], random.Random(seed + 1)
    while len(test) < n_test:
        e = make_split(rng, 1, held_out=True)[0]
        if e["request"].lower() not in seen:
            seen.add(e["request"].lower())
            test.append(e)
    return train, test


# ------------------------------------------------------------------------------ prompt, answer

PROMPT = "request: {request}\ncommand:"


def prompt(request):
    return PROMPT.format(request=request)


def answer(expected):
    """The compact JSON text bitnetd generates for the schema (keys in schema order)."""
    return json.dumps({k: expected[k] for k in ("house", "action", "level")}, separators=(",", ":"))


SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "greenhouse command",
    "description": "A command for one of nine greenhouses, read from a short free-text request "
                   "(models/demo/extract.md).",
    "type": "object",
    "properties": {
        "house": {"type": "integer", "minimum": 1, "maximum": 9,
                  "description": "which greenhouse (1-9)"},
        "action": {"enum": ACTIONS, "description": "what to do"},
        "level": {"type": "integer", "minimum": 0, "maximum": 100, "multipleOf": 10,
                  "description": "how much, in percent: 0 = off"},
    },
    "required": ["house", "action", "level"],
    "additionalProperties": False,
}


def tokenizer_texts():
    """Extra text for the vocabulary only: every answer value, and numbers as requests write them."""
    out = [str(i) for i in range(101)] * 3
    out += [answer({"house": h, "action": a, "level": l})
            for h in range(1, 10) for a in ACTIONS for l in range(0, 101, 10)]
    return out


if __name__ == "__main__":
    import collections
    tr, te = make_corpus(20261206, 3000, 400)
    for e in tr[:15] + te[:15]:
        print(f"{e['template']:14} {e['request']!r:70} {answer(e['expected'])}")
    print(collections.Counter(e["expected"]["action"] for e in tr))
    print(collections.Counter(e["expected"]["level"] for e in tr))
    print({f: tuple(map(len, template_split(f))) for f in FAMILIES})

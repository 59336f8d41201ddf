#!/usr/bin/env python3
"""Builds Tests/Fixtures/tokenizer/llama3-bpe.json (and, with --pre falcon3, falcon3-bpe.json): a small
byte-level BPE trained with Hugging Face `tokenizers` behind the Llama-3 (or Falcon3) pre-tokenizer,
plus test cases whose ids HF produced.

The Swift tokenizer loads `tokens` + `merges`, applies its own Llama-3 pre-tokenizer and BPE, and must
reproduce every case's `ids` exactly.

Usage: python3 tools/tokenizer-fixture/make_fixture.py [--pre llama3|falcon3] [--out FILE]
Deterministic: same corpus (seeded generator), same trainer settings → byte-identical JSON.
"""

import argparse
import json
import os
import random
import sys

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

LLAMA3 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
          r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
# llama.cpp's falcon3/falcon_e pre-tokenizer: three regexes in sequence (spec model-families §7).
FALCON3 = [r"[\p{P}\$\+<=>\^~\|`]+", GPT2, r"[0-9]"]
SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>"]
PRE = "llama3"
VOCAB_SIZE = 2000
SEED = 20240607

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DEFAULT_OUT = os.path.join(REPO, "Tests", "Fixtures", "tokenizer", "llama3-bpe.json")

# ------------------------------------------------------------------------------------ corpus

WORDS = ("the quick brown fox jumps over lazy dog model token sensor reading temperature humidity "
         "pressure device daemon network message broker decision label value window average "
         "minimum maximum error warning status online offline kitchen garden window door motion "
         "light battery voltage current power energy time date hour minute second day night "
         "alert normal high low open closed yes no maybe because although however therefore "
         "people world language number system program function variable return string").split()
CONTRACTIONS = ["don't", "can't", "won't", "it's", "I'm", "you're", "we'll", "they've", "she'd",
                "he's", "isn't", "wasn't", "I'll", "we're", "you've", "they'd", "DON'T", "I'M",
                "IT'S", "WE'LL", "THEY'VE", "YOU'RE", "SHE'D", "He'S", "We'Ll", "o'clock",
                "rock'n'roll", "'tis", "ma'am"]
ACCENTED = ["café", "naïve", "Zürich", "São Paulo", "façade", "über", "Ærøskøbing", "crème brûlée",
            "Łódź", "Dvořák", "señor", "jalapeño", "déjà vu", "Ångström", "coöperate", "Māori"]
GREEK = ["Καλημέρα κόσμε", "αβγδε", "Η γρήγορη καφέ αλεπού", "ΑΘΗΝΑ", "λόγος", "φιλοσοφία"]
CYRILLIC = ["Привет, мир!", "Съешь же ещё этих мягких французских булок", "МОСКВА", "дом",
            "Україна", "ёлка", "Здравствуйте"]
CJK = ["你好，世界", "日本語のテキスト", "東京タワー", "한국어 텍스트", "中文字符测试", "カタカナ",
       "ひらがな", "漢字", "서울"]
EMOJI = ["👍", "😀", "🎉🎉", "👨‍👩‍👧‍👦", "🏳️‍🌈", "❤️", "👩🏽‍💻", "🇩🇪", "🔥", "✅", "⚠️", "🙂"]
SYMBOLS = ["!!!", "...", "?!", "(x)", "[1]", "{a: b}", "@user", "#tag", "$100", "50%", "a^b", "x&y",
           "*bold*", "~", "€20", "£5", "©", "→", "∑", "≤", "±", "°C", "—", "–", "“quoted”", "«»",
           "<tag/>", "a|b", "\\n", "//", "/* */", "==", "!=", ">=", "->", "=>", "::", ";;"]
NUMBERS = ["1234567", "3.14159", "2024-01-15", "1,000,000", "0x1F", "42", "007", "12:30",
           "1e-5", "99.9%", "123456789012", "+49 30 1234", "v1.2.3", "²", "½", "٣٤٥", "१२३"]
CODE = ["def f(x):\n    return x**2\n", "for (int i = 0; i < n; ++i) {\n\tsum += a[i];\n}\n",
        "if x != y && z >= 3:\n    pass\n", "console.log(`hi ${name}`);", "let v = [1, 2, 3];",
        "#include <stdio.h>\r\nint main(void) { return 0; }\r\n", "SELECT * FROM t WHERE id = 7;",
        "    indented\n        more\n", "x = {'key': \"value\", 'n': 10}", "fn main() -> i32 { 0 }",
        "<div class=\"a\">text</div>", "a_b_c = CamelCase + snake_case"]
SPACES = ["  ", "   ", "\t", "\t\t", "\n", "\n\n", "\r\n", " \n", "\n ", "    ", " \t ", "\u00a0",
          "\u3000"]


def corpus(rng, n_lines=4000):
    cats = [WORDS, CONTRACTIONS, ACCENTED, GREEK, CYRILLIC, CJK, EMOJI, SYMBOLS, NUMBERS]
    weights = [40, 10, 6, 4, 4, 4, 3, 6, 6]
    lines = []
    for _ in range(n_lines):
        parts = []
        for _ in range(rng.randint(3, 14)):
            cat = rng.choices(cats, weights)[0]
            w = rng.choice(cat)
            if cat is WORDS and rng.random() < 0.15:
                w = w.capitalize() if rng.random() < 0.7 else w.upper()
            parts.append(w)
            parts.append(rng.choices([" ", rng.choice(SPACES), ", ", ". "], [70, 10, 10, 10])[0])
        if rng.random() < 0.1:
            parts.append(rng.choice(CODE))
        lines.append("".join(parts))
    lines.extend(CODE * 20)
    return lines


# ------------------------------------------------------------------------------------ tokenizer

def pre_tokenizer():
    splits = [LLAMA3] if PRE == "llama3" else FALCON3
    return pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(r), behavior="isolated") for r in splits]
                                   + [pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])


def train():
    rng = random.Random(SEED)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizer()
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_SIZE, show_progress=False, min_frequency=2,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus(rng), trainer)
    spec = json.loads(tok.to_str())
    vocab = spec["model"]["vocab"]
    merges = [m if isinstance(m, str) else " ".join(m) for m in spec["model"]["merges"]]
    return vocab, merges


def build(vocab, merges, ignore_merges):
    bpe = models.BPE(vocab=dict(vocab), merges=[tuple(m.split(" ", 1)) for m in merges],
                     ignore_merges=ignore_merges)
    tok = Tokenizer(bpe)
    tok.pre_tokenizer = pre_tokenizer()
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(SPECIALS)
    return tok


# ------------------------------------------------------------------------------------ cases

def fixed_cases():
    c = []

    def add(cat, *texts):
        for t in texts:
            c.append((cat, t))

    add("edge", "", " ", "  ", "hello   ", "   leading", "a", "\n\n\n", " \n ", "\t", "\r\n",
        "x\r\n\r\ny", "trailing space ", "a  b   c    d", "\n", " \t\n")
    add("contraction", "don't", "DON'T", "I'M", "I'm here", "it's IT'S It's", "we'll WE'LL We'Ll",
        "they've THEY'VE", "you'd YOU'D", "she's'll", "'s", "'S alone", "rock'n'roll", "o'clock",
        "ma'am's", "don’t (curly apostrophe)", "l'été")
    add("number", "1234567", "12345678901234567890", "3.14159", "1,000,000", "2024-01-15 12:30:59",
        "0x1F 0b1010", "a1b22c333d4444", "½ ² ٣٤٥ १२३ Ⅻ", "-42 +7", "99.9%")
    add("whitespace", "word\tword", "tabs\t\tand  spaces", "line1\nline2\n\nline4",
        "windows\r\nline\r\nends\r\n", "  two\n  lines  \n", "a\u00a0b", "a\u3000b",
        "a\u2009b\u200ac", "x\u000by\u000cz", "nel\u0085line", "   \n\n   x")
    add("punctuation", "Hello, world!", "Wait... what?!", "(parenthesized) [bracketed] {braced}",
        "a--b — c – d", "“smart quotes” and «guillemets»", "@#$%^&*()_+", "C:\\path\\to\\file",
        "https://example.com/a?b=c&d=e#f", "a.b.c", "!!!\n", "...\r\n", "?\n\n")
    add("accented", "café naïve Zürich", "Ærøskøbing façade", "Łódź Dvořák señor", "ÉCOLE École",
        "e\u0301 (decomposed é)", "\u0301", "\u0301\u0302abc", "a\u0308\u0301", "ß ẞ ﬁ")
    add("greek", "Καλημέρα κόσμε", "ΑΘΗΝΑ αθηνα", "λόγος's")
    add("cyrillic", "Привет, мир!", "Съешь же ещё этих мягких французских булок", "МОСКВА'S")
    add("cjk", "你好，世界", "日本語のテキストです。", "한국어 텍스트", "中文123字符", "東京タワー🗼")
    add("emoji", "👍", "👨‍👩‍👧‍👦 family", "🏳️‍🌈", "I ❤️ it", "👩🏽‍💻 coding", "🇩🇪🇫🇷", "ok✅done",
        "\u200d", "a\u200db")
    add("mixed", "English Ελληνικά Русский 中文 🙂", "abcαβγабв", "x=1;y=2\n# комментарий",
        "Temperature: 23.5°C, humidity 45%", "naïve café 你好 👍 don't")
    add("code", "def f(x):\n    return x**2\n", "for (int i = 0; i < n; ++i) {\n\tsum += a[i];\n}",
        "if x != y && z >= 3:", "console.log(`hi ${name}`);", "    indented\n        more\n",
        "#include <stdio.h>\r\nint main(void) { return 0; }\r\n", "a_b_c = CamelCase + snake_case")
    add("special", "<|begin_of_text|>Hello<|eot_id|>", "a<|eot_id|>b", "<|end_of_text|>",
        " <|eot_id|> ", "<|eot_id|><|eot_id|>", "<|begin_of_text|>User: hi<|eot_id|>Assistant: ",
        "<|eot_id|", "<|EOT_ID|>", "x\n<|eot_id|>\ny", "<|begin_of_text|>")
    add("exotic", "ſ's 'ſ", "K'S", "İstanbul'S", "ﬀ'll")
    return c


def ignore_merge_cases(vocab, tok_merge, tok_ignore, limit=6):
    """Vocab entries whose plain-BPE encoding differs from the vocab lookup (ignore_merges)."""
    inv = {v: k for k, v in vocab.items()}
    out = []
    for i in range(len(inv)):
        t = inv[i]
        text = tok_ignore.decode([i])
        if len(t) < 3 or not text or text != text.strip("\r\n") and False:
            continue
        pre = tok_ignore.pre_tokenizer.pre_tokenize_str(text)
        if len(pre) != 1:
            continue
        a = tok_merge.encode(text, add_special_tokens=False).ids
        b = tok_ignore.encode(text, add_special_tokens=False).ids
        if a != b:
            out.append(("ignore_merges", text))
            if len(out) >= limit:
                break
    return out


def random_cases(rng, n=12):
    out = []
    pool = (WORDS + CONTRACTIONS + ACCENTED + GREEK + CYRILLIC + CJK + EMOJI + SYMBOLS + NUMBERS
            + SPACES)
    for _ in range(n):
        s = ""
        for _ in range(rng.randint(4, 16)):
            s += rng.choice(pool) + rng.choice(["", " ", " ", "\n", "  ", "\t", "\r\n", ", "])
        out.append(("random", s))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=None)
    ap.add_argument("--pre", choices=["llama3", "falcon3"], default="llama3")
    a = ap.parse_args(argv)
    global PRE
    PRE = a.pre
    if a.out is None:
        a.out = DEFAULT_OUT if PRE == "llama3" else DEFAULT_OUT.replace("llama3-bpe", "falcon3-bpe")
    # Llama-3's BPE looks a fragment up whole first (ignore_merges); Falcon3's does not.
    ignore = PRE == "llama3"

    vocab, merges = train()
    tok = build(vocab, merges, ignore_merges=ignore)
    tok_plain = build(vocab, merges, ignore_merges=False)

    n_base = len(vocab)
    tokens = [None] * tok.get_vocab_size(with_added_tokens=True)
    for t, i in tok.get_vocab(with_added_tokens=True).items():
        tokens[i] = t
    assert all(t is not None for t in tokens)
    specials = {s: tok.token_to_id(s) for s in SPECIALS}
    assert sorted(specials.values()) == list(range(n_base, n_base + len(SPECIALS))), specials
    byte_chars = pre_tokenizers.ByteLevel.alphabet()
    missing = [ch for ch in byte_chars if ch not in vocab]
    assert not missing and len(byte_chars) == 256, missing

    rng = random.Random(SEED + 1)
    cases = fixed_cases() + (ignore_merge_cases(vocab, tok_plain, tok) if ignore else []) + random_cases(rng)
    out_cases = []
    seen = set()
    for cat, text in cases:
        if text in seen:
            continue
        seen.add(text)
        ids = tok.encode(text, add_special_tokens=False).ids
        # decoding must give the text back (byte-level BPE is lossless)
        assert tok.decode(ids, skip_special_tokens=False) == text, (text, ids)
        out_cases.append({"category": cat, "text": text, "ids": ids})

    doc = {
        "description": ("Byte-level BPE trained with HF tokenizers behind the Llama-3 pre-tokenizer "
                        "(Split(LLAMA3 regex, isolated) + ByteLevel(add_prefix_space=False, "
                        "use_regex=False)), BPE ignore_merges=true like Llama-3; see README.md.") if PRE == "llama3" else
                       ("Byte-level BPE trained with HF tokenizers behind the Falcon3 pre-tokenizer "
                        "(Split(punctuation run), Split(GPT-2), Split([0-9]), all isolated, + ByteLevel("
                        "add_prefix_space=False, use_regex=False)), ignore_merges=false; see README.md."),
        "pre_tokenizer": PRE,
        "pre_tokenizer_regex": LLAMA3 if PRE == "llama3" else FALCON3,
        "ignore_merges": ignore,
        "tokens": tokens,
        "merges": merges,
        "specials": specials,
        "cases": out_cases,
    }
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, indent=None, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {a.out}: {len(tokens)} tokens, {len(merges)} merges, {len(out_cases)} cases, "
          f"{os.path.getsize(a.out)} bytes", file=sys.stderr)


if __name__ == "__main__":
    main()

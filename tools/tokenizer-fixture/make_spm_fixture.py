#!/usr/bin/env python3
"""Builds Tests/Fixtures/tokenizer/spm-bpe.json: a SentencePiece BPE model with byte fallback, trained
with the `sentencepiece` package on the corpus of make_fixture.py, exported the way bitnet.cpp's
converter writes a Llama-2-style vocabulary into GGUF (pieces with U+2581, scores, token types
NORMAL 1 / UNKNOWN 2 / CONTROL 3 / USER_DEFINED 4 / UNUSED 5 / BYTE 6), plus test cases whose ids
SentencePiece itself produced (no BOS).

Trainer settings follow Llama 2's tokenizer: model_type=bpe, byte_fallback=true,
normalization_rule_name=identity, add_dummy_prefix=true, remove_extra_whitespaces=false,
split_digits=true (a unigram model, or NFKC normalisation, would encode differently from llama.cpp's
merge-by-score algorithm). The Swift tokenizer must reproduce every case exactly.

Usage: python3 tools/tokenizer-fixture/make_spm_fixture.py [--out FILE]   (pip install sentencepiece)
"""

import argparse
import io
import json
import os
import random
import sys

import sentencepiece as spm

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_fixture as MF  # noqa: E402  (corpus and cases)

VOCAB_SIZE = 1200
DEFAULT_OUT = os.path.join(MF.REPO, "Tests", "Fixtures", "tokenizer", "spm-bpe.json")


def train():
    rng = random.Random(MF.SEED)
    lines = [l.replace("\n", " ") for l in MF.corpus(rng)]
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_writer=model, vocab_size=VOCAB_SIZE, model_type="bpe",
        byte_fallback=True, normalization_rule_name="identity", add_dummy_prefix=True,
        remove_extra_whitespaces=False, split_digits=True, character_coverage=0.9995,
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1, num_threads=1, minloglevel=2,
        allow_whitespace_only_pieces=True, max_sentence_length=1 << 16)
    return spm.SentencePieceProcessor(model_proto=model.getvalue())


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=DEFAULT_OUT)
    a = ap.parse_args(argv)
    sp = train()
    n = sp.get_piece_size()
    tokens, scores, types = [], [], []
    for i in range(n):
        tokens.append(sp.id_to_piece(i))
        scores.append(sp.get_score(i))
        if sp.is_unknown(i):
            types.append(2)
        elif sp.is_control(i):
            types.append(3)
        elif sp.is_byte(i):
            types.append(6)
        elif sp.is_unused(i):
            types.append(5)
        else:
            types.append(1)
    rng = random.Random(MF.SEED + 2)
    cases, seen = [], set()
    for cat, text in MF.fixed_cases() + MF.random_cases(rng, n=24):
        if text in seen or "<|" in text:  # no special tokens in this vocabulary
            continue
        seen.add(text)
        ids = sp.encode(text)
        cases.append({"category": cat, "text": text, "ids": ids})
    doc = {
        "description": "SentencePiece BPE (byte_fallback, identity normalisation, dummy prefix) trained with "
                       "the sentencepiece package; ids from SentencePieceProcessor.encode (no BOS).",
        "tokens": tokens, "scores": scores, "types": types, "cases": cases,
    }
    with open(a.out, "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {a.out}: {n} pieces, {len(cases)} cases, {os.path.getsize(a.out)} bytes", file=sys.stderr)


if __name__ == "__main__":
    main()

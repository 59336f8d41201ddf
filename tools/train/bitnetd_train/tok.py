"""Byte-level BPE vocabulary for the demo model and bitnetd-train's models, trained with Hugging
Face `tokenizers` behind the Llama-3 pre-tokenizer (the one bitnetd uses when `tokenizer.ggml.pre`
is absent). Special tokens are moved to the end of the vocabulary, as in the published 2B4T file."""

from __future__ import annotations

import json

from tokenizers import Regex, Tokenizer, models, pre_tokenizers, trainers, decoders

LLAMA3 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
          r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>"]
BOS, EOS = SPECIALS[0], SPECIALS[1]


def _pre():
    return pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3), "isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])


def _wrap(model):
    tk = Tokenizer(model)
    tk.pre_tokenizer = _pre()
    tk.decoder = decoders.ByteLevel()
    return tk


def train_tokenizer(texts, vocab_size):
    """Returns (tokenizer, tokens list in id order, merges list) with specials at the end."""
    tk = _wrap(models.BPE(ignore_merges=True))
    trainer = trainers.BpeTrainer(vocab_size=vocab_size - len(SPECIALS), show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=[])
    tk.train_from_iterator(texts, trainer)
    state = json.loads(tk.to_str())
    vocab = state["model"]["vocab"]
    merges = [m if isinstance(m, str) else " ".join(m) for m in state["model"]["merges"]]
    tokens = sorted(vocab, key=vocab.get)
    tokens += SPECIALS
    return build(tokens, merges), tokens, merges


def build(tokens, merges):
    vocab = {t: i for i, t in enumerate(tokens) if t not in SPECIALS}
    pairs = [tuple(m.split(" ", 1)) for m in merges]
    tk = _wrap(models.BPE(vocab=vocab, merges=pairs, ignore_merges=True))
    tk.add_special_tokens(SPECIALS)
    assert [tk.token_to_id(s) for s in SPECIALS] == [len(tokens) - 3, len(tokens) - 2, len(tokens) - 1]
    return tk


def save(path, tokens, merges):
    with open(path, "w") as f:
        json.dump({"tokens": tokens, "merges": merges}, f)


def load(path):
    with open(path) as f:
        d = json.load(f)
    return build(d["tokens"], d["merges"]), d["tokens"], d["merges"]

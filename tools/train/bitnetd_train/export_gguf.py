"""Export a trained model (the demo's or bitnetd-train's) as a GGUF laid out like the published
BitNet b1.58 2B4T file (spec §2): the same 24 metadata keys in the same order, I2_S ternary tensors
(128/32 layout, α after the codes, 28 tail bytes), F16 tied `token_embd.weight`, F32 norms, no
`output.weight`, the same tensor names and physical order (blocks in lexicographic order of the
block number).

Uses the project's writer tools/reference/gguf_writer.py (and the I2_S encoder of bitnet_ref.py).
"""

from __future__ import annotations

import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "reference"))

import bitnet_ref as R  # noqa: E402
import gguf_writer as W  # noqa: E402

ARCH = "bitnet-b1.58"
FILE_TYPE_I2_S = 40
# The template the published file carries (spec §5.4); bitnetd never executes it.
CHAT_TEMPLATE = ("{% for message in messages %}{% if loop.first %}{{ bos_token }}{% endif %}"
                 "{% if message['role'] == 'user' %}{{ 'Human: ' + message['content'] + "
                 "'\\n\\nBITNETAssistant: ' + eos_token }}{% elif message['role'] == 'assistant' %}"
                 "{{ message['content'] + eos_token }}{% endif %}{% endfor %}")
SPECIALS = ("<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>")
# Per-block physical order of the published file (spec §2.5).
BLOCK_ORDER = ("attn_norm", "ffn_down", "ffn_sub_norm", "ffn_gate", "ffn_up", "ffn_norm",
               "attn_sub_norm", "attn_k", "attn_output", "attn_q", "attn_v")
NORMS = ("attn_norm", "attn_sub_norm", "ffn_norm", "ffn_sub_norm")


def ternarize(w: np.ndarray):
    """Absmean ternary quantization exactly as in training: α = max(mean|W|, 1e-5),
    T = clamp(round(W/α), -1, 1) in float32 with round-half-even."""
    w = np.asarray(w, np.float32)
    alpha = np.float32(max(float(np.mean(np.abs(w), dtype=np.float32)), 1e-5))
    T = np.clip(np.rint(w / alpha), -1, 1).astype(np.int8)
    return T, float(alpha)


def kv_pairs(cfg, tokens, merges, name):
    a = ARCH
    n = len(tokens)
    types = [3 if t in SPECIALS else 1 for t in tokens]
    scores = [-1000.0 if t in SPECIALS else 0.0 for t in tokens]
    bos, eos = tokens.index(SPECIALS[0]), tokens.index(SPECIALS[1])
    return [
        ("general.architecture", R.T_STRING, a),
        ("general.name", R.T_STRING, name),
        (f"{a}.vocab_size", R.T_UINT32, n),
        (f"{a}.context_length", R.T_UINT32, cfg["context"]),
        (f"{a}.embedding_length", R.T_UINT32, cfg["d"]),
        (f"{a}.block_count", R.T_UINT32, cfg["layers"]),
        (f"{a}.feed_forward_length", R.T_UINT32, cfg["ff"]),
        (f"{a}.rope.dimension_count", R.T_UINT32, cfg["d"] // cfg["heads"]),
        (f"{a}.attention.head_count", R.T_UINT32, cfg["heads"]),
        (f"{a}.attention.head_count_kv", R.T_UINT32, cfg["kv_heads"]),
        ("tokenizer.ggml.add_bos_token", R.T_BOOL, True),
        (f"{a}.attention.layer_norm_rms_epsilon", R.T_FLOAT32, 1e-5),
        (f"{a}.rope.freq_base", R.T_FLOAT32, 500000.0),
        ("general.file_type", R.T_UINT32, FILE_TYPE_I2_S),
        ("tokenizer.ggml.model", R.T_STRING, "gpt2"),
        ("tokenizer.ggml.tokens", R.T_ARRAY, (R.T_STRING, list(tokens))),
        ("tokenizer.ggml.scores", R.T_ARRAY, (R.T_FLOAT32, scores)),
        ("tokenizer.ggml.token_type", R.T_ARRAY, (R.T_INT32, types)),
        ("tokenizer.ggml.merges", R.T_ARRAY, (R.T_STRING, list(merges))),
        ("tokenizer.ggml.bos_token_id", R.T_UINT32, bos),
        ("tokenizer.ggml.eos_token_id", R.T_UINT32, eos),
        ("tokenizer.ggml.padding_token_id", R.T_UINT32, eos),
        ("tokenizer.chat_template", R.T_STRING, CHAT_TEMPLATE),
        ("general.quantization_version", R.T_UINT32, 2),
    ]


def export(model, tokens, merges, path, name="bitnetd-demo"):
    """model: model.BitNet (torch); tokens/merges: the GGUF-ordered vocabulary; name: the file's
    `general.name` (bitnetd reports it as the decisions' `model`)."""
    cfg = {"d": model.cfg.d, "layers": model.cfg.layers, "heads": model.cfg.heads,
           "kv_heads": model.cfg.kv_heads, "ff": model.cfg.ff, "context": model.cfg.context}
    assert model.cfg.vocab == len(tokens)
    sd = {k: v.detach().float().cpu().numpy() for k, v in model.state_dict().items()}
    emb = sd["token_embd"]                                  # [vocab, d]
    tensors = [("token_embd.weight", (cfg["d"], len(tokens))) + W.encode_float(emb, "f16")]
    for L in sorted(range(cfg["layers"]), key=str):         # 0, 1, 10, 11, …, 2, …
        for nm in BLOCK_ORDER:
            w = sd[f"blocks.{L}.{nm}.weight"]
            if nm in NORMS:
                tensors.append((f"blk.{L}.{nm}.weight", (w.shape[0],), R.GGML_F32,
                                w.astype(np.float32).tobytes()))
            else:
                M, K = w.shape
                T, alpha = ternarize(w)
                tensors.append((f"blk.{L}.{nm}.weight", (K, M), R.GGML_I2_S, R.encode_i2_s(T, alpha)))
    tensors.append(("output_norm.weight", (cfg["d"],), R.GGML_F32,
                    sd["output_norm.weight"].astype(np.float32).tobytes()))
    W.write_gguf(path, kv_pairs(cfg, tokens, merges, name), tensors)

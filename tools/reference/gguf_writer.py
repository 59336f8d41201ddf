"""Minimal GGUF v3 writer and random-model builder, used only by the reference's own self-tests
(so the reference can be exercised before/independently of `bitnetd dev make-model`)."""

from __future__ import annotations

import struct

import numpy as np

import bitnet_ref as R


def _str(s: str) -> bytes:
    b = s.encode("utf-8")
    return struct.pack("<Q", len(b)) + b


def _value(vt: int, v) -> bytes:
    if vt == R.T_STRING:
        return _str(v)
    if vt == R.T_ARRAY:
        et, items = v
        out = struct.pack("<IQ", et, len(items))
        if et == R.T_STRING:
            return out + b"".join(_str(x) for x in items)
        return out + np.asarray(items, dtype=R._SCALAR_NP[et]).tobytes()
    fmt = R._SCALAR_FMT[vt][0]
    return struct.pack(fmt, int(v) if vt == R.T_BOOL else v)


def write_gguf(path, kvs, tensors, alignment=32, version=3):
    """kvs: list of (key, value_type, value) — arrays as (key, T_ARRAY, (elem_type, list)).
    tensors: list of (name, ne tuple, ggml_type, raw bytes)."""
    head = b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(kvs))
    for k, vt, v in kvs:
        head += _str(k) + struct.pack("<I", vt) + _value(vt, v)
    off = 0
    infos = b""
    blobs = []
    for name, ne, tt, raw in tensors:
        assert len(raw) == R.tensor_nbytes(tt, ne), name
        infos += _str(name) + struct.pack("<I", len(ne)) + b"".join(struct.pack("<Q", e) for e in ne)
        infos += struct.pack("<IQ", tt, off)
        pad = (-len(raw)) % alignment
        blobs.append(raw + bytes(pad))
        off += len(raw) + pad
    hdr = head + infos
    hdr += bytes((-len(hdr)) % alignment)
    with open(path, "wb") as f:
        f.write(hdr)
        for b in blobs:
            f.write(b)


def encode_float(x, kind):
    """float32 array → (ggml type, bytes) for f32 / f16 / bf16 / q8_0."""
    x = np.ascontiguousarray(x, np.float32)
    if kind == "f32":
        return R.GGML_F32, x.tobytes()
    if kind == "f16":
        return R.GGML_F16, x.astype(np.float16).tobytes()
    if kind == "bf16":
        u = x.view(np.uint32).astype(np.uint64)
        u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16          # round to nearest even
        return R.GGML_BF16, u.astype("<u2").tobytes()
    if kind == "q8_0":
        b = x.reshape(-1, 32)
        d = (np.max(np.abs(b), axis=1) / 127).astype(np.float16)
        inv = np.where(d == 0, 0, 1 / np.maximum(d.astype(np.float32), 1e-30))
        q = np.clip(np.rint(b * inv[:, None]), -127, 127).astype(np.int8)
        return R.GGML_Q8_0, np.concatenate([d.reshape(-1, 1).view(np.uint8), q.view(np.uint8)], 1).tobytes()
    raise ValueError(kind)


def _ternary_bytes(kind, T, alpha):
    M, K = T.shape
    if kind == "i2_s":
        return R.GGML_I2_S, R.encode_i2_s(T, alpha)
    d = np.full((M, K // R.QK_K), alpha, np.float16)
    if kind == "tq2_0":
        return R.GGML_TQ2_0, R.encode_tq2_0(T, d)
    if kind == "tq1_0":
        return R.GGML_TQ1_0, R.encode_tq1_0(T, d)
    raise ValueError(kind)


# general.file_type of the fork (spec §3.1): readers take tensor type 36 for I2_S in a file whose
# architecture is not a BitNet one only with file_type 38/39/40.
FILE_TYPES = {"i2_s": 40, "tq1_0": 36, "tq2_0": 37}


def _vocab(model, n):
    """Tokenizer metadata: "gpt2" — names t0…, the last one CONTROL; "llama" — a SentencePiece
    layout (model-families §13.1): <unk>, <s>, </s>, the 256 byte tokens <0xHH>, then ▁t… pieces
    with scores."""
    if model != "llama":
        return [("tokenizer.ggml.model", R.T_STRING, model),
                ("tokenizer.ggml.tokens", R.T_ARRAY, (R.T_STRING, [f"t{i}" for i in range(n)])),
                ("tokenizer.ggml.token_type", R.T_ARRAY, (R.T_INT32, [1] * (n - 1) + [3]))]
    if n < 260:
        raise ValueError("a SentencePiece vocabulary needs at least 260 tokens")
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    types = [2, 3, 3] + [6] * 256
    tokens += [f"\u2581t{i}" for i in range(n - len(tokens))]
    types += [1] * (n - len(types))
    scores = [0.0] * 259 + [-float(i) for i in range(n - 259)]
    return [("tokenizer.ggml.model", R.T_STRING, "llama"),
            ("tokenizer.ggml.tokens", R.T_ARRAY, (R.T_STRING, tokens)),
            ("tokenizer.ggml.scores", R.T_ARRAY, (R.T_FLOAT32, scores)),
            ("tokenizer.ggml.token_type", R.T_ARRAY, (R.T_INT32, types)),
            ("tokenizer.ggml.bos_token_id", R.T_UINT32, 1),
            ("tokenizer.ggml.eos_token_id", R.T_UINT32, 2),
            ("tokenizer.ggml.unknown_token_id", R.T_UINT32, 0)]


def make_random_model(path, arch="bitnet-b1.58", layers=2, embd=128, heads=4, kv_heads=2, ff=256,
                      vocab=300, kind="i2_s", seed=0, hidden_activation=None, scale_tensors=False,
                      context=256, embd_type="f16", output_type=None, biases=False, sub_norms=None,
                      tokenizer_model="gpt2", rope_base=10000.0):
    """A random, well-conditioned model (ternary scale ≈ 1/√K). arch "llama" gets no sub-norms
    (sub_norms=None: sub-norms for every other arch); output_type (f32/f16/bf16/q8_0) adds an
    untied output.weight; biases adds blk.N.attn_{q,k,v,output}.bias (F32)."""
    rng = np.random.default_rng(seed)
    a = arch
    if sub_norms is None:
        sub_norms = arch != "llama"
    kvs = [
        ("general.architecture", R.T_STRING, arch),
        ("general.name", R.T_STRING, "reference-selftest"),
        (f"{a}.context_length", R.T_UINT32, context),
        (f"{a}.embedding_length", R.T_UINT32, embd),
        (f"{a}.block_count", R.T_UINT32, layers),
        (f"{a}.feed_forward_length", R.T_UINT32, ff),
        (f"{a}.rope.dimension_count", R.T_UINT32, embd // heads),
        (f"{a}.attention.head_count", R.T_UINT32, heads),
        (f"{a}.attention.head_count_kv", R.T_UINT32, kv_heads),
        (f"{a}.attention.layer_norm_rms_epsilon", R.T_FLOAT32, 1e-5),
        (f"{a}.rope.freq_base", R.T_FLOAT32, rope_base),
        (f"{a}.vocab_size", R.T_UINT32, vocab),
        ("general.file_type", R.T_UINT32, FILE_TYPES[kind]),
    ] + _vocab(tokenizer_model, vocab)
    if hidden_activation is not None:
        kvs.append((f"{a}.hidden_activation", R.T_STRING, hidden_activation))
    tensors = []
    emb = (rng.standard_normal((vocab, embd)) * 0.5).astype(np.float32)
    tensors.append(("token_embd.weight", (embd, vocab)) + encode_float(emb, embd_type))
    if output_type is not None:
        out = (rng.standard_normal((vocab, embd)) * 0.5).astype(np.float32)
        tensors.append(("output.weight", (embd, vocab)) + encode_float(out, output_type))
    kvw = embd // heads * kv_heads
    shapes = {"attn_q": (embd, embd), "attn_k": (embd, kvw), "attn_v": (embd, kvw),
              "attn_output": (embd, embd), "ffn_gate": (embd, ff), "ffn_up": (embd, ff),
              "ffn_down": (ff, embd)}
    norms = [("attn_norm", embd), ("ffn_norm", embd)]
    if sub_norms:
        norms += [("attn_sub_norm", embd), ("ffn_sub_norm", ff)]
    for L in range(layers):
        for nm, width in norms:
            w = (1.0 + 0.1 * rng.standard_normal(width)).astype(np.float32)
            tensors.append((f"blk.{L}.{nm}.weight", (width,), R.GGML_F32, w.tobytes()))
        for nm, (K, M) in shapes.items():
            T = rng.integers(-1, 2, size=(M, K)).astype(np.int8)
            alpha = float(np.float16(1.0 / np.sqrt(K * 2.0 / 3.0)))
            tt, raw = _ternary_bytes(kind, T, alpha)
            tensors.append((f"blk.{L}.{nm}.weight", (K, M), tt, raw))
            if scale_tensors:
                sc = np.array([1.0 + 0.25 * rng.standard_normal()], np.float32)
                tensors.append((f"blk.{L}.{nm}.scale", (1,), R.GGML_F32, sc.tobytes()))
            if biases and nm in R.ATTN_LINEARS:
                b = (0.2 * rng.standard_normal(M)).astype(np.float32)
                tensors.append((f"blk.{L}.{nm}.bias", (M,), R.GGML_F32, b.tobytes()))
    tensors.append(("output_norm.weight", (embd,), R.GGML_F32,
                    (1.0 + 0.1 * rng.standard_normal(embd)).astype(np.float32).tobytes()))
    write_gguf(path, kvs, tensors)

"""Unit tests of the NumPy reference's `llama` graph and graph selection (no engine needed):
NORM vs NEOX RoPE on a vector worked by hand, the converter's Q/K permutation linking the two,
model-families §10 rule 1 on metadata-only files, what a llama file may contain, and the whole
llama forward pass against a plain float64 re-statement of model-families §2.2 written here."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import bitnet_ref as R
import gguf_writer as W

REF = os.path.join(os.path.dirname(os.path.abspath(R.__file__)), "bitnet_ref.py")


# ---------------------------------------------------------------- RoPE

# One head x = (1, 2, 3, 4), n_rot = head_dim = 4, base 100: theta_scale = 100^(-2/4) = 0.1, so at
# position 1 pair 0 turns by 1 rad and pair 1 by 0.1 rad. cos 1 = 0.5403023, sin 1 = 0.8414710,
# cos 0.1 = 0.9950042, sin 0.1 = 0.0998334.
#   NORM pairs (x0, x1), (x2, x3):
#     x0' = 1·cos1 − 2·sin1 = −1.1426397     x1' = 1·sin1 + 2·cos1 = 1.9220756
#     x2' = 3·cos.1 − 4·sin.1 = 2.5856790    x3' = 3·sin.1 + 4·cos.1 = 4.2795169
#   NEOX pairs (x0, x2), (x1, x3):
#     x0' = 1·cos1 − 3·sin1 = −1.9841107     x2' = 1·sin1 + 3·cos1 = 2.4623779
#     x1' = 2·cos.1 − 4·sin.1 = 1.5906747    x3' = 2·sin.1 + 4·cos.1 = 4.1796835
HAND_X = np.array([[1, 2, 3, 4], [1, 2, 3, 4]], np.float32)
HAND_NORM_POS1 = [-1.1426397, 1.9220756, 2.5856790, 4.2795169]
HAND_NEOX_POS1 = [-1.9841107, 1.5906747, 2.4623779, 4.1796835]


def test_rope_norm_vs_neox_by_hand():
    pos = np.array([0, 1])
    norm = R.rope_norm(HAND_X, pos, 1, 4, 4, 100.0)
    neox = R.rope_neox(HAND_X, pos, 1, 4, 4, 100.0)
    assert np.array_equal(norm[0], HAND_X[0]) and np.array_equal(neox[0], HAND_X[0])
    assert np.allclose(norm[1], HAND_NORM_POS1, atol=2e-6), norm[1]
    assert np.allclose(neox[1], HAND_NEOX_POS1, atol=2e-6), neox[1]


def _hf_to_interleaved(x, n_heads, head_dim):
    """The llama converter's Q/K row permutation (model-families §2.1) applied to a vector:
    per head, element s·D/2 + i moves to 2i + s."""
    n = x.shape[0]
    return x.reshape(n, n_heads, 2, head_dim // 2).swapaxes(2, 3).reshape(n, n_heads * head_dim)


def test_rope_norm_on_permuted_rows_equals_neox():
    rng = np.random.default_rng(20)
    H, D = 3, 16
    x = rng.standard_normal((6, H * D)).astype(np.float32)
    pos = np.array([0, 1, 2, 5, 17, 100])
    for base in (10000.0, 500000.0, 1000042.0):
        a = R.rope_norm(_hf_to_interleaved(x, H, D), pos, H, D, D, base)
        b = _hf_to_interleaved(R.rope_neox(x, pos, H, D, D, base), H, D)
        assert np.array_equal(a, b)


def test_rope_norm_vs_float64():
    rng = np.random.default_rng(21)
    H, D = 2, 32
    x = rng.standard_normal((4, H * D)).astype(np.float32)
    pos = np.array([0, 3, 9, 40])
    y = R.rope_norm(x, pos, H, D, D, 10000.0)
    z = x.astype(np.float64).reshape(4, H, D // 2, 2)
    c = z[..., 0] + 1j * z[..., 1]
    th = pos[:, None] * 10000.0 ** (-np.arange(0, D, 2) / D)
    c = c * np.exp(1j * th)[:, None, :]
    ref = np.stack([c.real, c.imag], axis=-1).reshape(4, -1)
    assert np.max(np.abs(y - ref)) < 1e-5
    y2 = R.rope_norm(x, pos, H, D, 8, 10000.0)           # partial rotation leaves dims ≥ 8 alone
    assert np.array_equal(y2.reshape(4, H, D)[..., 8:], x.reshape(4, H, D)[..., 8:])


# ---------------------------------------------------------------- graph selection (§10 rule 1)

def _meta_file(path, arch, layers=24, heads=8, kv_heads=8, tokenizer="llama"):
    kvs = [("general.architecture", R.T_STRING, arch),
           (f"{arch}.block_count", R.T_UINT32, layers),
           (f"{arch}.attention.head_count", R.T_UINT32, heads),
           (f"{arch}.attention.head_count_kv", R.T_UINT32, kv_heads),
           ("tokenizer.ggml.model", R.T_STRING, tokenizer)]
    W.write_gguf(path, kvs, [])
    return R.GGUFFile(str(path))


@pytest.mark.parametrize("arch,layers,heads,kv,tok,want", [
    ("llama", 24, 8, 8, "llama", "llama"),
    ("llama", 2, 8, 2, "gpt2", "llama"),
    ("bitnet", 2, 8, 2, "gpt2", "bitnet"),
    ("bitnet", 24, 8, 8, "llama", "bitnet"),
    ("bitnet-25", 24, 8, 8, "llama", "bitnet-b1.58"),
    ("bitnet-b1.58", 30, 20, 5, "gpt2", "bitnet-b1.58"),         # 2B4T
    ("bitnet-b1.58", 24, 16, 16, "llama", "bitnet"),            # 1bitLLM large, 2026 converter
    ("bitnet-b1.58", 26, 32, 32, "llama", "bitnet"),            # 1bitLLM 3B, 2026 converter
    ("bitnet-b1.58", 24, 16, 16, "gpt2", "bitnet-b1.58"),       # not SentencePiece
    ("bitnet-b1.58", 25, 16, 16, "llama", "bitnet-b1.58"),      # layer count
    ("bitnet-b1.58", 24, 16, 4, "llama", "bitnet-b1.58"),       # GQA
])
def test_select_graph_auto(tmp_path, arch, layers, heads, kv, tok, want):
    g = _meta_file(tmp_path / "m.gguf", arch, layers, heads, kv, tok)
    name, reason = R.select_graph(g)
    assert name == want and reason
    for forced in R.GRAPHS:
        assert R.select_graph(g, forced)[0] == forced


def test_select_graph_rejects(tmp_path):
    g = _meta_file(tmp_path / "m.gguf", "qwen3")
    with pytest.raises(R.GGUFError, match="unsupported architecture"):
        R.select_graph(g)
    assert R.select_graph(g, "llama")[0] == "llama"
    with pytest.raises(R.GGUFError, match="unknown graph"):
        R.select_graph(g, "falcon")


def test_1bitllm_trap_runs_silu_and_override(tmp_path):
    p = str(tmp_path / "m.gguf")
    W.make_random_model(p, arch="bitnet-b1.58", layers=24, embd=128, heads=2, kv_heads=2, ff=128,
                        vocab=300, tokenizer_model="llama", seed=22)
    m = R.BitNetModel(p)
    assert (m.graph, m.act, m.spec.rope) == ("bitnet", "silu", "neox")
    m2 = R.BitNetModel(p, graph="bitnet-b1.58")
    assert (m2.graph, m2.act) == ("bitnet-b1.58", "relu2")
    with pytest.raises(R.GGUFError, match="not part of the llama graph"):
        R.BitNetModel(p, graph="llama")                     # sub-norms are not in the llama graph


# ---------------------------------------------------------------- llama files

def _llama(tmp_path, name="m.gguf", **kw):
    cfg = dict(arch="llama", layers=2, embd=128, heads=4, kv_heads=2, ff=256, vocab=300, seed=23)
    cfg.update(kw)
    p = str(tmp_path / name)
    W.make_random_model(p, **cfg)
    return p


def test_llama_loads(tmp_path):
    m = R.BitNetModel(_llama(tmp_path))
    assert (m.graph, m.act, m.spec.rope, m.head_source) == ("llama", "silu", "norm", "token_embd.weight")
    assert m.output_tied and not m.has_biases and m.layers[0].attn_sub_norm is None
    m = R.BitNetModel(_llama(tmp_path, "u.gguf", output_type="f16", biases=True))
    assert m.head_source == "output.weight" and not m.output_tied and m.has_biases
    assert not np.array_equal(m.lm_weight, m.tok_embd)
    assert set(m.layers[1].bias) == set(R.ATTN_LINEARS)
    assert m.layers[1].bias["attn_k"].shape == (64,)


def test_bitnet_graphs_ignore_output_weight(tmp_path):
    p = str(tmp_path / "b.gguf")
    W.make_random_model(p, arch="bitnet-b1.58", layers=1, output_type="f16", seed=24)
    m = R.BitNetModel(p)
    assert m.head_source == "token_embd.weight" and m.lm_weight is m.tok_embd


def _rewrite(src, dst, drop_keys=(), set_keys=(), extra_tensors=()):
    g = R.GGUFFile(src)
    kvs = []
    for k, v in g.metadata.items():
        if k in drop_keys:
            continue
        vt = g.metadata_types[k]
        if vt == R.T_ARRAY:
            et = R.T_STRING if isinstance(v, list) else \
                {"<i4": R.T_INT32, "<f4": R.T_FLOAT32}[v.dtype.str]
            v = (et, list(v))
        kvs.append((k, vt, v))
    kvs += list(set_keys)
    tensors = [(n, g.tensors[n].ne, g.tensors[n].type, bytes(g.raw(n))) for n in g.tensor_order]
    W.write_gguf(dst, kvs, tensors + list(extra_tensors))
    return dst


def test_llama_refusals(tmp_path):
    p = _llama(tmp_path)
    with pytest.raises(R.GGUFError, match="layer_norm_rms_epsilon"):
        R.BitNetModel(_rewrite(p, str(tmp_path / "a.gguf"),
                               drop_keys=("llama.attention.layer_norm_rms_epsilon",)))
    with pytest.raises(R.GGUFError, match="rope.dimension_count"):
        R.BitNetModel(_rewrite(p, str(tmp_path / "b.gguf"), drop_keys=("llama.rope.dimension_count",),
                               set_keys=[("llama.rope.dimension_count", R.T_UINT32, 16)]))
    for extra in ("blk.0.ffn_up.bias", "blk.1.attn_q.scale", "rope_freqs.weight"):
        t = (extra, (1,), R.GGML_F32, np.ones(1, np.float32).tobytes())
        with pytest.raises(R.GGUFError, match="not part of the llama graph"):
            R.BitNetModel(_rewrite(p, str(tmp_path / "c.gguf"), extra_tensors=[t]))
    bad_bias = ("blk.0.attn_q.bias", (64,), R.GGML_F32, np.ones(64, np.float32).tobytes())
    with pytest.raises(R.GGUFError, match="attn_q.bias"):
        R.BitNetModel(_rewrite(p, str(tmp_path / "d.gguf"), extra_tensors=[bad_bias]))
    with pytest.raises(R.GGUFError, match="missing tensor"):
        R.BitNetModel(p, graph="bitnet")                    # no sub-norms in a llama file
    with pytest.raises(R.GGUFError, match="type 36 is I2_S only"):   # spec §3.1
        R.BitNetModel(_rewrite(p, str(tmp_path / "e.gguf"), drop_keys=("general.file_type",)))
    R.BitNetModel(_rewrite(_llama(tmp_path, "t.gguf", kind="tq2_0", embd=256, ff=512),
                           str(tmp_path / "f.gguf"),
                           drop_keys=("general.file_type",)))


def test_llama_stage_dump_consistency(tmp_path):
    m = R.BitNetModel(_llama(tmp_path, output_type="f16", biases=True))
    ids = [3, 1, 4, 1, 5, 9]
    E = m.stages(ids)
    assert not any("sub_norm" in k for k in E)
    assert np.array_equal(E["logits"], m.logits(ids))
    L = m.layers[1]
    pos = np.arange(len(ids))
    assert np.array_equal(R.rope_norm(E["l1.attn_k"] + L.bias["attn_k"], pos, m.n_head_kv,
                                      m.head_dim, m.n_rot, m.rope_base), E["l1.k_rope"])
    _, q = L.lin["attn_q"].forward(E["l1.attn_norm"])
    assert np.array_equal(q, E["l1.attn_q"])                   # dumped before the bias
    assert np.array_equal(m.rope(q + L.bias["attn_q"], pos, m.n_head), E["l1.q_rope"])
    assert np.array_equal(E["l1.in"] + (E["l1.attn_output"] + L.bias["attn_output"]), E["l1.ffn_in"])
    _, down = L.lin["ffn_down"].forward(E["l1.ffn_act"])       # ffn_down reads the product directly
    assert np.array_equal(down, E["l1.ffn_down"])
    assert np.array_equal(R.lm_head(m.lm_weight, E["out_norm"]), E["logits"])


def test_llama_same_ternary_weights_all_types_agree(tmp_path):
    ids = list(range(1, 21))
    lg = {}
    for k in ("i2_s", "tq2_0", "tq1_0"):
        m = R.BitNetModel(_llama(tmp_path, k + ".gguf", kind=k, embd=256, ff=512))
        lg[k] = m.logits(ids, prompt_len=6)
    assert np.array_equal(lg["tq2_0"], lg["tq1_0"])
    sc = np.max(np.abs(lg["i2_s"]))
    assert np.max(np.abs(lg["i2_s"][:6] - lg["tq2_0"][:6])) < 1e-5 * sc


# ---------------------------------------------------------------- whole llama forward pass

def _plain_llama_f64(path, ids, rope="norm", use_biases=True, f16=True):
    """model-families §2.2 restated in float64 from the file, sharing nothing with ref_model or
    ref_numerics but the container reader: RMSNorm → BitLinear (per-token int8 absmax, ties to
    even) + bias → RoPE on Q, K → causal GQA softmax attention, 1/√D → attn_output + bias →
    residual → RMSNorm → down(silu(gate)·up) → residual; output_norm → head. f16: the storage
    precision of spec §4.7 for a one-batch pass (q, K, V and the head's input rounded to f16);
    without it the two differ by ~1 % of max|logit| on these models."""
    g = R.GGUFFile(path)
    a = g.get("general.architecture")
    d = g.get(f"{a}.embedding_length")
    H = g.get(f"{a}.attention.head_count")
    Hkv = g.get(f"{a}.attention.head_count_kv")
    D = d // H
    eps = float(np.float32(g.get(f"{a}.attention.layer_norm_rms_epsilon")))
    base = float(np.float32(g.get(f"{a}.rope.freq_base")))
    t = lambda name: g.dequantize(name).astype(np.float64)          # noqa: E731
    has = lambda name: name in g.tensors                             # noqa: E731

    r16 = (lambda x: x.astype(np.float16).astype(np.float64)) if f16 else (lambda x: x)   # noqa: E731

    def norm(x, w):
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w

    def bitlinear(x, name):
        s = 127.0 / np.maximum(np.max(np.abs(x), axis=-1, keepdims=True), 1e-5)
        q = np.clip(np.round(x * s), -128, 127)
        y = (q @ t(name + ".weight").T) / s
        if use_biases and has(name + ".bias"):
            y = y + t(name + ".bias")
        return y

    n = len(ids)
    pos = np.arange(n)
    freqs = base ** (-np.arange(0, D, 2) / D)
    ang = np.exp(1j * pos[:, None] * freqs[None, :])[:, None, :]     # [n, 1, D/2]

    def rot(x, heads):
        x = x.reshape(n, heads, D)
        if rope == "norm":
            c = (x[..., 0::2] + 1j * x[..., 1::2]) * ang
            return np.stack([c.real, c.imag], axis=-1).reshape(n, heads * D)
        c = (x[..., :D // 2] + 1j * x[..., D // 2:]) * ang
        return np.concatenate([c.real, c.imag], axis=-1).reshape(n, heads * D)

    h = t("token_embd.weight")[ids]
    for L in range(g.get(f"{a}.block_count")):
        p = f"blk.{L}."
        x = norm(h, t(p + "attn_norm.weight"))
        q = r16(rot(bitlinear(x, p + "attn_q"), H)).reshape(n, H, D)
        k = r16(rot(bitlinear(x, p + "attn_k"), Hkv)).reshape(n, Hkv, D)
        v = r16(bitlinear(x, p + "attn_v")).reshape(n, Hkv, D)
        o = np.zeros((n, H, D))
        for hh in range(H):
            kv = hh * Hkv // H
            sc = q[:, hh] @ k[:, kv].T / np.sqrt(D)
            sc[np.triu_indices(n, 1)] = -np.inf
            pr = np.exp(sc - sc.max(axis=1, keepdims=True))
            o[:, hh] = (pr / pr.sum(axis=1, keepdims=True)) @ v[:, kv]
        h = h + bitlinear(o.reshape(n, d), p + "attn_output")
        x = norm(h, t(p + "ffn_norm.weight"))
        gate, up = bitlinear(x, p + "ffn_gate"), bitlinear(x, p + "ffn_up")
        h = h + bitlinear(gate / (1 + np.exp(-gate)) * up, p + "ffn_down")
    y = norm(h, t("output_norm.weight"))
    head = t("output.weight") if has("output.weight") else t("token_embd.weight")
    return r16(y) @ head.T


@pytest.mark.parametrize("kind,output_type,biases", [("i2_s", None, False), ("tq2_0", "f16", True),
                                                    ("tq1_0", "q8_0", True)])
def test_llama_forward_vs_plain_float64(tmp_path, kind, output_type, biases):
    p = _llama(tmp_path, kind=kind, embd=256, heads=4, kv_heads=1, ff=512, output_type=output_type,
               biases=biases, rope_base=500.0)
    ids = [5, 17, 2, 99, 250, 3, 41, 7, 8, 120]
    got = R.BitNetModel(p).logits(ids)                  # one batch, like the plain version
    ref = _plain_llama_f64(p, ids)
    sc = np.max(np.abs(ref))

    def rel(a):                                         # per position, relative to max|logit|
        return np.max(np.abs(a - ref), axis=1) / sc

    # Float32 vs float64 arithmetic flips an int8 code now and then, which moves a position's
    # logits by up to ~1 % (spec §4.7); most positions agree to ~1e-6.
    err = rel(got)
    assert np.max(err) < 1e-2 and np.median(err) < 1e-4, err
    # the comparison tells the graphs apart: the wrong RoPE, or no biases, is far off everywhere
    assert np.all(rel(_plain_llama_f64(p, ids, rope="neox"))[1:] > 1e-2)
    if biases:
        assert np.all(rel(_plain_llama_f64(p, ids, use_biases=False)) > 1e-2)


def test_cli_graph(tmp_path):
    p = _llama(tmp_path, output_type="f16")
    out = subprocess.run([sys.executable, REF, "graph", p], check=True, capture_output=True, text=True)
    info = json.loads(out.stdout)
    assert info["name"] == "llama" and info["rope"] == "norm" and info["head"] == "output.weight"
    b = str(tmp_path / "b.gguf")
    W.make_random_model(b, arch="bitnet", layers=1, seed=25)
    out = subprocess.run([sys.executable, REF, "graph", b, "--graph", "bitnet-b1.58"], check=True,
                         capture_output=True, text=True)
    assert json.loads(out.stdout)["activation"] == "relu2"
    lg = tmp_path / "l.bin"
    subprocess.run([sys.executable, REF, "logits", p, "--graph", "llama", "--token-ids", "1,2,3",
                    "--prompt-len", "2", "--out", str(lg)], check=True)
    assert np.array_equal(np.fromfile(lg, "<f4").reshape(3, 300),
                          R.BitNetModel(p).logits([1, 2, 3], prompt_len=2))

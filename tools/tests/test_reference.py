"""Engine (`bitnetd`) vs the independent NumPy reference (tools/reference/bitnet_ref.py).

* Stage tests: the engine's dumped input of each stage is fed to the reference's stage function
  (identical inputs); integer BitLinear dots must be exact (I2_S), every float stage must satisfy
  max|Δ| ≤ 1e-5 · max|ref|.
* End-to-end: the reference picks 32 greedy tokens after a random prompt; engine and reference then
  both process prompt + those 32 ids (prompt as one batch, the rest one at a time) and must satisfy
  max|Δlogit| ≤ 1e-3 · max|logit| at every position, and the same argmax wherever the reference's
  top1−top2 margin exceeds twice that tolerance.
* Graph: the graph `bitnetd inspect --json` names is the one the reference picks from the file.

Every graph is covered: `bitnet-b1.58` (archs bitnet-b1.58, bitnet-25), `bitnet` and `llama`
(SwiGLU, no sub-norms, NORM RoPE, GQA, tied or untied head, with and without attention biases; the
stage checks follow the graph the reference picked, e.g. ffn_down reads ffn_act in llama).

Each model is generated with `bitnetd dev make-model` into a temporary directory.
Run: python3 -m pytest tools/tests -q
"""

import json
import os

import numpy as np
import pytest

import bitnet_ref as R
import gguf_writer as W
from conftest import engine_logits, normal_token_ids, run_engine

STAGE_RTOL = 1e-5
E2E_RTOL = 1e-3
N_GREEDY = 32

# Shapes: I2_S needs every K (d and F) to be a multiple of 128, TQ1_0/TQ2_0 a multiple of 256,
# so d = 64 is not representable in any ternary type; d ∈ {128, 256} are used.
MODELS = {
    # arch bitnet-b1.58, ReLU², I2_S, GQA 4 (4 q-heads / 1 kv-head), head_dim 32
    "b158-i2s-d128-h4kv1": dict(arch="bitnet-b1.58", layers=3, embd=128, heads=4, kv_heads=1,
                                ff=384, vocab=320, type="i2_s", seed=11),
    # arch bitnet-b1.58, TQ2_0, GQA 2, head_dim 32
    "b158-tq2-d256-h8kv4": dict(arch="bitnet-b1.58", layers=3, embd=256, heads=8, kv_heads=4,
                                ff=768, vocab=400, type="tq2_0", seed=12),
    # arch bitnet-25 (same graph), TQ1_0, MHA (GQA 1), head_dim 64
    "b25-tq1-d256-h4kv4": dict(arch="bitnet-25", layers=3, embd=256, heads=4, kv_heads=4,
                               ff=512, vocab=300, type="tq1_0", seed=13),
    # mainline bitnet, explicit silu, per-tensor scale tensors, I2_S, GQA 4, 4 layers
    "bitnet-silu-scales-i2s-d256-h8kv2": dict(arch="bitnet", layers=4, embd=256, heads=8,
                                              kv_heads=2, ff=640, vocab=350, type="i2_s", seed=14,
                                              hidden_activation="silu", scale_tensors=True),
    # mainline bitnet, activation key left to the default (SiLU), scale tensors, TQ2_0, head_dim 128
    "bitnet-default-scales-tq2-d256-h2kv2": dict(arch="bitnet", layers=3, embd=256, heads=2,
                                                 kv_heads=2, ff=512, vocab=300, type="tq2_0",
                                                 seed=15, scale_tensors=True),
    # mainline bitnet with hidden_activation relu2, TQ1_0, GQA 2
    "bitnet-relu2-tq1-d256-h4kv2": dict(arch="bitnet", layers=3, embd=256, heads=4, kv_heads=2,
                                        ff=768, vocab=330, type="tq1_0", seed=16,
                                        hidden_activation="relu2"),
    # embedding / tied LM head stored as BF16 and as Q8_0 instead of F16 (decoders; LM head is
    # still f16-rounded vector · dequantized weights in float32)
    "b158-i2s-embd-bf16-d128-h2kv1": dict(arch="bitnet-b1.58", layers=3, embd=128, heads=2,
                                          kv_heads=1, ff=256, vocab=300, type="i2_s", seed=17,
                                          embd_type="bf16"),
    "b158-i2s-embd-q8_0-d256-h8kv8": dict(arch="bitnet-b1.58", layers=3, embd=256, heads=8,
                                          kv_heads=8, ff=384, vocab=300, type="i2_s", seed=18,
                                          embd_type="q8_0"),
    "b158-tq2-embd-q6_k-d256-h4kv2": dict(arch="bitnet-b1.58", layers=3, embd=256, heads=4,
                                          kv_heads=2, ff=512, vocab=512, type="tq2_0", seed=19,
                                          embd_type="q6_k"),
    # an output.weight in a bitnet-b1.58 file is ignored: the head is token_embd (model-families
    # §3.3 and §10 rule 2)
    "b158-i2s-output-ignored-d128-h4kv2": dict(arch="bitnet-b1.58", layers=2, embd=128, heads=4,
                                               kv_heads=2, ff=256, vocab=300, type="i2_s", seed=20,
                                               output_type="f16"),
    # llama graph (Llama3-8B-1.58, Falcon3, Falcon-E; model-families §2.2): SwiGLU, no sub-norms,
    # NORM RoPE; tied (token_embd) or untied (output.weight) head, optional attention biases
    "llama-i2s-tied-d256-h8kv2": dict(arch="llama", layers=3, embd=256, heads=8, kv_heads=2,
                                      ff=512, vocab=320, type="i2_s", seed=31),
    # head_dim 256 as in Falcon3
    "llama-i2s-untied-bias-d512-h2kv1": dict(arch="llama", layers=2, embd=512, heads=2, kv_heads=1,
                                             ff=768, vocab=300, type="i2_s", seed=32,
                                             output_type="f16", bias=True),
    "llama-tq2-tied-bias-d256-h4kv2": dict(arch="llama", layers=3, embd=256, heads=4, kv_heads=2,
                                           ff=512, vocab=350, type="tq2_0", seed=33, bias=True),
    "llama-tq1-untied-q6_k-d256-h4kv1": dict(arch="llama", layers=3, embd=256, heads=4, kv_heads=1,
                                             ff=512, vocab=300, type="tq1_0", seed=34,
                                             output_type="q6_k"),
}
I2S_MODELS = [k for k, v in MODELS.items() if v["type"] == "i2_s"]
STAGE_PROMPT_LENS = [1, 16]
E2E_PROMPT_LENS = [1, 19]
# "default" = the engine's own choice (fastest path for this CPU); "scalar" = BITNETD_KERNEL=scalar,
# the engine's scalar C reference kernels (its float dot products then run sequentially, the order
# the NumPy reference uses).
E2E_KERNELS = ["default", "scalar"]


def _rng(*keys):
    h = 0
    for k in keys:
        for ch in str(k):
            h = (h * 131 + ord(ch)) % (2 ** 32)
    return np.random.default_rng(h)


def random_prompt(model, name, n):
    ok = normal_token_ids(model)
    return [int(t) for t in _rng(name, n).choice(ok, size=n)]


def compare(name, ref, got, rtol):
    """Returns None if max|Δ| ≤ rtol·max|ref|, else a precise description."""
    ref = np.asarray(ref, np.float64)
    got = np.asarray(got, np.float64)
    if ref.shape != got.shape:
        return f"{name}: shape engine {got.shape} vs reference {ref.shape}"
    if not np.all(np.isfinite(got)):
        return f"{name}: engine has {np.count_nonzero(~np.isfinite(got))} non-finite values"
    scale = float(np.max(np.abs(ref))) if ref.size else 0.0
    diff = np.abs(ref - got)
    mx = float(diff.max()) if diff.size else 0.0
    if mx <= rtol * scale:
        return None
    idx = np.unravel_index(int(np.argmax(diff)), diff.shape)
    nbad = int(np.count_nonzero(diff > rtol * scale))
    return (f"{name}: max|Δ|={mx:.3e} = {mx / scale if scale else float('inf'):.3e}·max|ref| "
            f"(max|ref|={scale:.4g}, tol {rtol:g}) at {tuple(int(i) for i in idx)}: "
            f"ref={ref[idx]:.7g} engine={got[idx]:.7g}; {nbad}/{diff.size} elements over tol")


def compare_int(name, ref, got):
    ref = np.asarray(ref, np.int64)
    got = np.asarray(got, np.int64)
    if ref.shape != got.shape:
        return f"{name}: shape engine {got.shape} vs reference {ref.shape}"
    bad = ref != got
    if not bad.any():
        return None
    idx = np.unravel_index(int(np.argmax(bad)), bad.shape)
    return (f"{name}: {int(bad.sum())}/{bad.size} integer dots differ, max|Δ|="
            f"{int(np.abs(ref - got).max())}; first at {tuple(int(i) for i in idx)}: "
            f"ref={int(ref[idx])} engine={int(got[idx])}")


# ----------------------------------------------------------------------------------------------
# Stage dumps
# ----------------------------------------------------------------------------------------------

_DUMPS = {}


@pytest.fixture(scope="module")
def dumps(engine_models, tmp_path_factory):
    def get(name, plen):
        key = (name, plen)
        if key not in _DUMPS:
            cfg = MODELS[name]
            path = engine_models.path(name, cfg)
            m = engine_models.ref(name, cfg)
            ids = random_prompt(m, name + "-stages", plen)
            d = tmp_path_factory.mktemp(f"dump-{name}-{plen}")
            dump_dir = str(d / "stages")
            logits = engine_logits(path, ids, plen, str(d), dump_dir=dump_dir, n_vocab=m.n_vocab)
            if not os.path.isfile(os.path.join(dump_dir, "manifest.tsv")):
                pytest.fail(f"engine wrote no {dump_dir}/manifest.tsv", pytrace=False)
            _DUMPS[key] = (m, ids, R.read_stages(dump_dir), logits)
        return _DUMPS[key]
    return get


def expected_manifest(m: R.BitNetModel, n):
    """Stage names, types and shapes of a prompt batch of n tokens; the sub-norm stages only in
    graphs with sub-norms. A projection's stage holds its BitLinear output before the bias."""
    d, F, H, Hkv, D, V = m.n_embd, m.n_ff, m.n_head, m.n_head_kv, m.head_dim, m.n_vocab
    sub = m.spec.sub_norms
    out = {}
    rows = {"attn_q": H * D, "attn_k": Hkv * D, "attn_v": Hkv * D, "attn_output": d,
            "ffn_gate": F, "ffn_up": F, "ffn_down": d}
    for L in range(m.n_layer):
        p = f"l{L}."
        out[p + "in"] = ("f32", n, d)
        out[p + "attn_norm"] = ("f32", n, d)
        for nm in ("attn_q", "attn_k", "attn_v"):
            if m.weight_kind == "i2_s":
                out[p + nm + ".dot"] = ("i32", n, rows[nm])
            out[p + nm] = ("f32", n, rows[nm])
        out[p + "q_rope"] = ("f32", n, H * D)
        out[p + "k_rope"] = ("f32", n, Hkv * D)
        out[p + "attn"] = ("f32", n, H * D)
        if sub:
            out[p + "attn_sub_norm"] = ("f32", n, d)
        for nm in ("attn_output",):
            if m.weight_kind == "i2_s":
                out[p + nm + ".dot"] = ("i32", n, d)
            out[p + nm] = ("f32", n, d)
        out[p + "ffn_in"] = ("f32", n, d)
        out[p + "ffn_norm"] = ("f32", n, d)
        for nm in ("ffn_gate", "ffn_up"):
            if m.weight_kind == "i2_s":
                out[p + nm + ".dot"] = ("i32", n, F)
            out[p + nm] = ("f32", n, F)
        out[p + "ffn_act"] = ("f32", n, F)
        if sub:
            out[p + "ffn_sub_norm"] = ("f32", n, F)
        if m.weight_kind == "i2_s":
            out[p + "ffn_down.dot"] = ("i32", n, d)
        out[p + "ffn_down"] = ("f32", n, d)
    out["out_norm"] = ("f32", n, d)
    out["logits"] = ("f32", n, V)
    return out


STAGE_KINDS = ["manifest", "embedding", "rmsnorm", "bitlinear", "rope", "attention", "ffn_act",
               "residual", "lm_head"]


def _check_stage(kind, m: R.BitNetModel, ids, E, logits_file):
    """Returns a list of failure descriptions for one stage kind over all layers."""
    errs = []
    n = len(ids)
    pos = np.arange(n)

    def need(name):
        if name not in E:
            errs.append(f"{name}: missing from the engine dump")
            return None
        return E[name]

    def cmp(name, ref, rtol=STAGE_RTOL):
        got = need(name)
        if got is not None:
            e = compare(name, ref, got, rtol)
            if e:
                errs.append(e)

    if kind == "manifest":
        exp = expected_manifest(m, n)
        for name, (dt, r, c) in exp.items():
            if name not in E:
                errs.append(f"{name}: missing ({dt} [{r},{c}] expected)")
                continue
            a = E[name]
            got_dt = "i32" if a.dtype.kind == "i" else "f32"
            if (got_dt, a.shape[0], a.shape[1]) != (dt, r, c):
                errs.append(f"{name}: engine {got_dt} {list(a.shape)}, expected {dt} [{r},{c}]")
        if "logits" in E:
            e = compare("logits.bin vs dump logits", E["logits"], logits_file, 0.0)
            if e:
                errs.append(e)
        return errs

    if kind == "embedding":
        cmp("l0.in", m.tok_embd[np.asarray(ids)], 0.0)
        return errs

    last = m.n_layer - 1
    sub = m.spec.sub_norms
    # the input stage of each group of projections in this graph
    inputs = (("attn_norm", ("attn_q", "attn_k", "attn_v")),
              ("attn_sub_norm" if sub else "attn", ("attn_output",)),
              ("ffn_norm", ("ffn_gate", "ffn_up")),
              ("ffn_sub_norm" if sub else "ffn_act", ("ffn_down",)))
    for L, layer in enumerate(m.layers):
        p = f"l{L}."
        if kind == "rmsnorm":
            norms = [("in", "attn_norm", layer.attn_norm), ("ffn_in", "ffn_norm", layer.ffn_norm)]
            if sub:
                norms += [("attn", "attn_sub_norm", layer.attn_sub_norm),
                          ("ffn_act", "ffn_sub_norm", layer.ffn_sub_norm)]
            for src, dst, w in norms:
                x = need(p + src)
                if x is not None:
                    cmp(p + dst, R.rmsnorm(x, w, m.eps))
            if L == last:
                a, b = need(p + "ffn_in"), need(p + "ffn_down")
                if a is not None and b is not None:
                    cmp("out_norm", R.rmsnorm(a + b, m.output_norm, m.eps))
        elif kind == "bitlinear":
            for src, nms in inputs:
                x = need(p + src)
                if x is None:
                    continue
                for nm in nms:
                    w = layer.lin[nm]
                    q, _, _ = R.quantize_act(x)
                    dot = w.int_dot(q)
                    if w.kind == "i2_s" or (p + nm + ".dot") in E:
                        got = need(p + nm + ".dot")
                        if got is not None:
                            e = compare_int(p + nm + ".dot", dot, got)
                            if e:
                                errs.append(e)
                    _, y = w.forward(x)
                    cmp(p + nm, y)
        elif kind == "rope":
            q, k = need(p + "attn_q"), need(p + "attn_k")
            if q is not None:
                cmp(p + "q_rope", m.rope(m.add_bias(layer, "attn_q", q), pos, m.n_head))
            if k is not None:
                cmp(p + "k_rope", m.rope(m.add_bias(layer, "attn_k", k), pos, m.n_head_kv))
        elif kind == "attention":
            q, k, v = need(p + "q_rope"), need(p + "k_rope"), need(p + "attn_v")
            if q is not None and k is not None and v is not None:
                v = m.add_bias(layer, "attn_v", v)
                ref = R.attention(q, k.astype(np.float16), v.astype(np.float16), pos, m.n_head,
                                  m.n_head_kv, m.head_dim, single_token=(n == 1))
                cmp(p + "attn", ref)
        elif kind == "ffn_act":
            g, u = need(p + "ffn_gate"), need(p + "ffn_up")
            if g is not None and u is not None:
                cmp(p + "ffn_act", R.ffn_act(g, u, m.act))
        elif kind == "residual":
            a, b = need(p + "in"), need(p + "attn_output")
            if a is not None and b is not None:
                cmp(p + "ffn_in", a + m.add_bias(layer, "attn_output", b))
            if L < last:
                a, b = need(p + "ffn_in"), need(p + "ffn_down")
                if a is not None and b is not None:
                    cmp(f"l{L + 1}.in", a + b)
    if kind == "lm_head":
        y = need("out_norm")
        if y is not None:
            cmp("logits", R.lm_head(m.lm_weight, y))
            e = compare("logits.bin (last batch row block)", R.lm_head(m.lm_weight, y), logits_file,
                        STAGE_RTOL)
            if e:
                errs.append(e)
    return errs


@pytest.mark.parametrize("plen", STAGE_PROMPT_LENS)
@pytest.mark.parametrize("kind", STAGE_KINDS)
@pytest.mark.parametrize("name", list(MODELS))
def test_stage(dumps, name, kind, plen):
    m, ids, E, logits_file = dumps(name, plen)
    errs = _check_stage(kind, m, ids, E, logits_file)
    assert not errs, f"[{name}, prompt {plen}, stage {kind}]\n  " + "\n  ".join(errs)


@pytest.mark.parametrize("plen", STAGE_PROMPT_LENS)
@pytest.mark.parametrize("name", I2S_MODELS)
def test_stage_i2s_dots_present(dumps, name, plen):
    m, ids, E, _ = dumps(name, plen)
    missing = [f"l{L}.{nm}.dot" for L in range(m.n_layer) for nm in R.LINEARS
               if f"l{L}.{nm}.dot" not in E]
    assert not missing, f"I2_S model {name}: engine dump lacks integer dots {missing[:8]}..."


# ----------------------------------------------------------------------------------------------
# Graph selection
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(MODELS))
def test_engine_picks_same_graph(engine_models, name):
    cfg = MODELS[name]
    path = engine_models.path(name, cfg)
    m = engine_models.ref(name, cfg)
    info = json.loads(run_engine(["inspect", path, "--json"]).stdout)
    got = (info.get("graph") or {}).get("name")
    assert got == m.graph, (f"[{name}] engine runs graph {got!r} "
                            f"({(info.get('graph') or {}).get('reason')!r}); the reference picks "
                            f"{m.graph!r} ({m.graph_reason})")


# Files the generator cannot write (SentencePiece vocabulary; 24/26 layers) for model-families §10
# rule 1, written with the reference's own writer: (arch, layers, heads, kv heads, tokenizer model).
DISPATCH_CASES = {
    "b158-spm-24-mha": ("bitnet-b1.58", 24, 2, 2, "llama"),     # 1bitLLM large, 2026 converter
    "b158-spm-26-mha": ("bitnet-b1.58", 26, 2, 2, "llama"),     # 1bitLLM 3B, 2026 converter
    "b158-spm-24-gqa": ("bitnet-b1.58", 24, 2, 1, "llama"),
    "b158-spm-25-mha": ("bitnet-b1.58", 25, 2, 2, "llama"),
    "b158-gpt2-24-mha": ("bitnet-b1.58", 24, 2, 2, "gpt2"),
    "b25-spm-24-mha": ("bitnet-25", 24, 2, 2, "llama"),
    "bitnet-gpt2-2-gqa": ("bitnet", 2, 2, 1, "gpt2"),
    "llama-spm-24-mha": ("llama", 24, 2, 2, "llama"),
}
_DISPATCH_FILES = {}


def dispatch_file(tmp_path_factory, case):
    if case not in _DISPATCH_FILES:
        arch, layers, heads, kv, tok = DISPATCH_CASES[case]
        p = str(tmp_path_factory.mktemp("dispatch-" + case) / "model.gguf")
        W.make_random_model(p, arch=arch, layers=layers, embd=128, heads=heads, kv_heads=kv, ff=128,
                            vocab=300, tokenizer_model=tok, seed=40)
        _DISPATCH_FILES[case] = p
    return _DISPATCH_FILES[case]


@pytest.mark.parametrize("case", list(DISPATCH_CASES))
def test_engine_graph_dispatch(tmp_path_factory, case):
    path = dispatch_file(tmp_path_factory, case)
    want, why = R.select_graph(R.GGUFFile(path))
    # exit 1 = a file the engine cannot run (e.g. its tokenizer); the graph is reported regardless
    info = json.loads(run_engine(["inspect", path, "--json"], ok_exit=(0, 1)).stdout)
    got = (info.get("graph") or {}).get("name")
    assert got == want, (f"[{case}: {DISPATCH_CASES[case]}] engine runs graph {got!r} "
                         f"({(info.get('graph') or {}).get('reason')!r}); the reference picks "
                         f"{want!r} ({why})")


@pytest.mark.parametrize("kernel", E2E_KERNELS)
def test_end_to_end_1bitllm_dispatch(tmp_path_factory, tmp_path, kernel):
    """A bitnet-b1.58 file of a converted 1bitLLM model runs the bitnet graph (SiLU) untold."""
    path = dispatch_file(tmp_path_factory, "b158-spm-24-mha")
    m = R.BitNetModel(path)
    assert m.graph == "bitnet" and m.act == "silu"
    _end_to_end(m, path, "b158-spm-24-mha", 4, kernel, tmp_path, n_greedy=8)


# ----------------------------------------------------------------------------------------------
# End to end
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kernel", E2E_KERNELS)
@pytest.mark.parametrize("plen", E2E_PROMPT_LENS)
@pytest.mark.parametrize("name", list(MODELS))
def test_end_to_end(engine_models, tmp_path, name, plen, kernel):
    cfg = MODELS[name]
    _end_to_end(engine_models.ref(name, cfg), engine_models.path(name, cfg), name, plen, kernel,
                tmp_path)


# A file run by a graph other than the one its metadata selects (`--graph` / graph=): the 1bitLLM
# case (a bitnet-b1.58 file that needs SiLU) and the opposite.
GRAPH_OVERRIDES = [("b158-i2s-d128-h4kv1", "bitnet"),
                   ("bitnet-silu-scales-i2s-d256-h8kv2", "bitnet-b1.58")]


@pytest.mark.parametrize("kernel", E2E_KERNELS)
@pytest.mark.parametrize("name,graph", GRAPH_OVERRIDES)
def test_end_to_end_graph_override(engine_models, tmp_path, name, graph, kernel):
    cfg = MODELS[name]
    path = engine_models.path(name, cfg)
    m = R.BitNetModel(path, graph=graph)
    assert m.graph == graph != engine_models.ref(name, cfg).graph
    _end_to_end(m, path, name, E2E_PROMPT_LENS[-1], kernel, tmp_path, graph=graph)


def _end_to_end(m, path, name, plen, kernel, tmp_path, graph=None, n_greedy=N_GREEDY):
    prompt = random_prompt(m, name + "-e2e", plen)
    gen = m.greedy(prompt, n_greedy)
    ids = prompt + gen
    ref = m.logits(ids, prompt_len=plen)
    kern = None if kernel == "default" else kernel
    got = engine_logits(path, ids, plen, str(tmp_path), n_vocab=m.n_vocab, kernel=kern, graph=graph)
    errs = []
    worst = 0.0
    for i in range(len(ids)):
        r, g = ref[i].astype(np.float64), got[i].astype(np.float64)
        scale = float(np.max(np.abs(r)))
        tol = E2E_RTOL * scale
        if not np.all(np.isfinite(g)):
            errs.append(f"pos {i}: engine logits not finite")
            continue
        d = float(np.max(np.abs(r - g)))
        worst = max(worst, d / scale if scale else np.inf)
        if d > tol:
            j = int(np.argmax(np.abs(r - g)))
            errs.append(f"pos {i}: max|Δlogit|={d:.3e} = {d / scale:.2e}·max|logit| "
                        f"(max|logit|={scale:.4g}) at token {j}: ref={r[j]:.6g} engine={g[j]:.6g}")
        top = np.argsort(r)[::-1]
        margin = r[top[0]] - r[top[1]]
        if margin > 2 * tol and int(np.argmax(g)) != int(top[0]):
            errs.append(f"pos {i}: argmax engine {int(np.argmax(g))} vs reference {int(top[0])} "
                        f"(reference margin {margin:.4g} > 2·tol {2 * tol:.4g})")
    if errs:
        errs.append(_divergence_report(m, path, ids, plen, ref, got, tmp_path, kern, graph))
    assert not errs, (f"[{name}, graph {m.graph}, kernel {kernel}, prompt {plen} + {n_greedy} greedy, "
                      f"worst {worst:.2e}·max|logit|]\n  "
                      + "\n  ".join(errs if len(errs) <= 41 else errs[:40] + ["..."] + errs[-1:]))


def _divergence_report(m, path, ids, plen, ref, got, tmp_path, kernel, graph=None):
    """Diagnostics for a failing end-to-end test: first position whose logits differ at all, and
    the first stage of the prompt batch where the engine's own dump departs from the reference's
    forward pass (chained, not identical inputs) by more than the stage tolerance."""
    rel = np.max(np.abs(ref - got), axis=1) / np.maximum(np.max(np.abs(ref), axis=1), 1e-30)
    nz = np.nonzero(rel > 0)[0]
    lines = [f"diagnostics: first position with any logit difference: "
             f"{int(nz[0]) if nz.size else None} (prompt rows 0..{plen - 1}); "
             f"rel. max|Δ| per position: " + " ".join(f"{v:.0e}" for v in rel)]
    d = tmp_path / "diag"
    d.mkdir(exist_ok=True)
    engine_logits(path, ids[:plen], plen, str(d), dump_dir=str(d / "stages"), kernel=kernel,
                  graph=graph)
    E = R.read_stages(str(d / "stages"))
    mine = m.stages(ids[:plen])
    for k, v in mine.items():
        if k in E and E[k].shape == v.reshape(v.shape[0], -1).shape:
            dv = np.abs(E[k].astype(np.float64) - v.reshape(E[k].shape))
            if dv.max() > 0:
                lines.append(f"first prompt-batch stage with any difference (chained): {k} "
                             f"({np.count_nonzero(dv)}/{dv.size} elements, max|Δ|={dv.max():.3e})")
                break
    for k, v in mine.items():
        if k in E and E[k].shape == v.reshape(v.shape[0], -1).shape:
            sc = float(np.max(np.abs(v))) or 1.0
            dv = float(np.max(np.abs(E[k].astype(np.float64) - v.reshape(E[k].shape))))
            if dv > STAGE_RTOL * sc:
                lines.append(f"first prompt-batch stage departing from the reference (chained): {k} "
                             f"max|Δ|={dv:.3e} ({dv / sc:.2e}·max|ref|)")
                break
    else:
        lines.append("prompt-batch stages all within the stage tolerance of the reference (chained)")
    return "\n  ".join(lines)

"""Float numerics of the NumPy reference forward pass (part of tools/reference/bitnet_ref.py;
written from /work/shared/spec/bitnet-gguf.md and model-families.md only, no code shared with the
Swift engine): RMSNorm (spec §4.2), NEOX RoPE (§4.3), NORM RoPE (model-families §2.2, the `llama`
graph), causal GQA attention, FFN activation and LM head with the storage precision of §4.7 (F16 q,
F16 probabilities on 1-token steps, F16-rounded final vector before the F16 LM head).

Float details the spec leaves open, fixed here (choices documented at each function):
  * RMSNorm: Σx² in float64, then the float32 expression 1.0f/sqrtf((float)mean + eps) (§4.2);
  * cos/sin (RoPE), exp (softmax, SiLU) and powf (RoPE theta scale) are the C library's float32
    functions via ctypes (float64-rounded fallback if libm is unavailable or BITNET_REF_NO_LIBM=1);
  * every float dot product (attention K·q and V·p, LM head) is accumulated in float32 sequentially
    in index order, no fused multiply-add.
"""

from __future__ import annotations

import os

import numpy as np

F32 = np.float32
F16 = np.float16


# --------------------------------------------------------------------------------------------
# Numerics (spec §4.2–§4.4, §4.7)
# --------------------------------------------------------------------------------------------

def rmsnorm(x: np.ndarray, w: np.ndarray, eps: float) -> np.ndarray:
    """Spec §4.2: mean = (Σ x²)/n accumulated in float64 (squares of the float64 values), then
    the float32 expression 1.0f / sqrtf(mean + eps) with mean rounded to float32 and eps float32;
    y = (x * scale) * weight in float32."""
    x = np.asarray(x, F32)
    x64 = x.astype(np.float64)
    mean = (np.sum(x64 * x64, axis=-1, keepdims=True) / x.shape[-1]).astype(F32)
    scale = F32(1) / np.sqrt(mean + F32(eps))          # float32 add, sqrt, division
    return (x * scale) * np.asarray(w, F32)


def _load_libm():
    """The C library's float functions (cosf, sinf, powf), which spec §4.3 names; None if absent."""
    try:
        import ctypes
        import ctypes.util
        lib = ctypes.CDLL(ctypes.util.find_library("m") or "libm.so.6")
        for fn in ("cosf", "sinf"):
            getattr(lib, fn).restype = ctypes.c_float
            getattr(lib, fn).argtypes = [ctypes.c_float]
        lib.expf.restype = ctypes.c_float
        lib.expf.argtypes = [ctypes.c_float]
        lib.powf.restype = ctypes.c_float
        lib.powf.argtypes = [ctypes.c_float, ctypes.c_float]
        return lib
    except (OSError, AttributeError):
        return None


_LIBM = None if os.environ.get("BITNET_REF_NO_LIBM") else _load_libm()
_TRIG_CACHE: dict = {}


def _cos_sin_f32(theta: np.ndarray):
    """float32 cos/sin of float32 angles: C cosf/sinf when available (what the spec's ggml code and
    the engine call), else float64 cos/sin rounded to float32 (differs by ≤ 1 ulp)."""
    if _LIBM is None:
        t64 = theta.astype(np.float64)
        return np.cos(t64).astype(F32), np.sin(t64).astype(F32)
    c = np.empty(theta.shape, F32)
    s = np.empty(theta.shape, F32)
    fc, fs = c.reshape(-1), s.reshape(-1)
    for k, t in enumerate(theta.reshape(-1).tolist()):
        v = _TRIG_CACHE.get(t)
        if v is None:
            v = (_LIBM.cosf(t), _LIBM.sinf(t))
            _TRIG_CACHE[t] = v
        fc[k], fs[k] = v
    return c, s


def expf(x: np.ndarray) -> np.ndarray:
    """Element-wise float32 exp: C expf when available, else float64 exp rounded to float32."""
    x = np.asarray(x, F32)
    if _LIBM is None:
        return np.exp(x.astype(np.float64)).astype(F32)
    f = _LIBM.expf
    return np.fromiter((f(v) for v in x.reshape(-1).tolist()), dtype=F32, count=x.size).reshape(x.shape)


def dot_seq(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Σ_k a[..., k]·b[..., k] accumulated in float32 sequentially k = 0, 1, … (each product and
    each sum rounded to float32, no fused multiply-add). a and b broadcast against each other.
    This is the canonical order the reference uses for every float dot product (attention K·q,
    V·p, LM head); engines may use another order (differences of a few ulp)."""
    a = np.asarray(a, F32)
    b = np.asarray(b, F32)
    K = a.shape[-1]
    acc = np.zeros(np.broadcast_shapes(a.shape[:-1], b.shape[:-1]), F32)
    for k in range(K):
        acc += a[..., k] * b[..., k]
    return acc


def dot_lanes8(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The attention-score order every bitnetd kernel path uses (ternary_kernels.h,
    tk_attn_scores): eight float32 lanes, lane l accumulating the products of elements
    k ≡ l (mod 8) in index order (products and sums rounded to float32, no FMA), then
    ((l0+l1)+(l2+l3)) + ((l4+l5)+(l6+l7))."""
    a = np.asarray(a, F32)
    b = np.asarray(b, F32)
    K = a.shape[-1]
    shape = np.broadcast_shapes(a.shape[:-1], b.shape[:-1])
    lanes = np.zeros(shape + (8,), F32)
    full = K - K % 8
    for j in range(0, full, 8):
        lanes += a[..., j:j + 8] * b[..., j:j + 8]
    for k in range(full, K):
        lanes[..., k % 8] += a[..., k] * b[..., k]
    l = lanes
    return ((l[..., 0] + l[..., 1]) + (l[..., 2] + l[..., 3])) + ((l[..., 4] + l[..., 5]) + (l[..., 6] + l[..., 7]))


def rope_theta_scale(base: float, n_rot: int) -> np.float32:
    """theta_scale = powf(base, -2.0f/n_rot) in float32."""
    e = F32(-2.0) / F32(n_rot)
    if _LIBM is not None:
        return F32(_LIBM.powf(float(F32(base)), float(e)))
    return F32(float(F32(base)) ** float(e))


def _rope_cos_sin(positions, n_rot: int, base: float):
    """float32 cos/sin [n, n_rot/2] of θ_i = pos·theta_scale^i, the angle of rotation pair i:
    θ_0 = pos, θ_{i+1} = θ_i · theta_scale iterated in float32 (spec §4.3; ggml's rope cache
    computes the angles the same way for every rope mode)."""
    pos = np.asarray(positions, F32).reshape(-1)
    half = n_rot // 2
    theta_scale = rope_theta_scale(base, n_rot)
    theta = np.empty((pos.size, half), F32)
    theta[:, 0] = pos
    for i in range(1, half):
        theta[:, i] = theta[:, i - 1] * theta_scale
    cos, sin = _cos_sin_f32(theta)
    return cos[:, None, :], sin[:, None, :]


def rope_neox(x: np.ndarray, positions, n_heads: int, head_dim: int, n_rot: int, base: float) -> np.ndarray:
    """NEOX RoPE (rotate-half; `bitnet`, `bitnet-b1.58`, `bitnet-25`): on each head the pairs
    (i, i + n_rot/2), i < n_rot/2, rotated by θ_i (spec §4.3); dims ≥ n_rot untouched.
    x: float32 [n, n_heads·head_dim]."""
    x = np.asarray(x, F32)
    n = x.shape[0]
    half = n_rot // 2
    cos, sin = _rope_cos_sin(positions, n_rot, base)
    xr = x.reshape(n, n_heads, head_dim).copy()
    x0 = xr[:, :, :half].copy()
    x1 = xr[:, :, half:n_rot].copy()
    xr[:, :, :half] = x0 * cos - x1 * sin
    xr[:, :, half:n_rot] = x0 * sin + x1 * cos
    return xr.reshape(n, n_heads * head_dim)


def rope_norm(x: np.ndarray, positions, n_heads: int, head_dim: int, n_rot: int, base: float) -> np.ndarray:
    """NORM RoPE (ggml rope mode 0; the `llama` graph, model-families §2.2): on each head the
    adjacent pairs (2i, 2i + 1), i < n_rot/2, rotated by the same θ_i = pos·base^(−2i/n_rot) as
    rope_neox (x'[2i] = x[2i]·cos − x[2i+1]·sin, x'[2i+1] = x[2i]·sin + x[2i+1]·cos, float32, no
    FMA); dims ≥ n_rot untouched. The llama converter permutes the Q/K rows of each head from
    rotate-half order to this interleaved order (model-families §2.1), so
    rope_norm(P·x) = P·rope_neox(x) for that permutation P. x: float32 [n, n_heads·head_dim]."""
    x = np.asarray(x, F32)
    n = x.shape[0]
    cos, sin = _rope_cos_sin(positions, n_rot, base)
    xr = x.reshape(n, n_heads, head_dim).copy()
    x0 = xr[:, :, 0:n_rot:2].copy()
    x1 = xr[:, :, 1:n_rot:2].copy()
    xr[:, :, 0:n_rot:2] = x0 * cos - x1 * sin
    xr[:, :, 1:n_rot:2] = x0 * sin + x1 * cos
    return xr.reshape(n, n_heads * head_dim)


ROPE_FUNCS = {"neox": rope_neox, "norm": rope_norm}


def attention(q: np.ndarray, kcache: np.ndarray, vcache: np.ndarray, positions, n_head: int,
              n_head_kv: int, head_dim: int, single_token: bool | None = None) -> np.ndarray:
    """Causal GQA attention with the storage precision of spec §4.7.
    q: float32 [n, H*D]; kcache/vcache: float16 [T, Hkv*D] holding positions 0..T-1;
    positions: [n] absolute positions of the query rows. Returns float32 [n, H*D].
    Per query row and head: s_j = Σ_i f16(q)_i·K_ji (float32, eight-lane order of dot_lanes8);
    s_j *= 1/sqrtf(D);
    softmax over j ≤ pos: m = max, e_j = expf(s_j − m), Σ e_j in float64, p_j = e_j · float32(1/Σ);
    p rounded to f16 iff the call processes exactly one token; o = Σ_j p_j·V_j (float32, sequential
    over j = 0, 1, …)."""
    q = np.asarray(q, F32)
    n = q.shape[0]
    if single_token is None:
        single_token = n == 1
    positions = np.asarray(positions)
    Tn = kcache.shape[0]
    group = n_head // n_head_kv
    kv_of = np.arange(n_head) // group
    K = np.asarray(kcache, F16).astype(F32).reshape(Tn, n_head_kv, head_dim)[:, kv_of, :]
    V = np.asarray(vcache, F16).astype(F32).reshape(Tn, n_head_kv, head_dim)[:, kv_of, :]
    K = K.transpose(1, 0, 2)                                   # [H, T, D]
    V = V.transpose(1, 0, 2)                                   # [H, T, D]
    qh = q.astype(F16).astype(F32).reshape(n, n_head, head_dim)
    kq_scale = F32(1) / np.sqrt(F32(head_dim))
    s = dot_lanes8(qh[:, :, None, :], K[None, :, :, :])       # [n, H, T]
    s = s * kq_scale
    mask = np.broadcast_to((np.arange(Tn)[None, :] > positions[:, None])[:, None, :], s.shape)
    s[mask] = -np.inf
    m = np.max(s, axis=2, keepdims=True)
    e = np.zeros_like(s)
    keep = ~mask
    e[keep] = expf((s - m)[keep])
    tot = np.sum(e.astype(np.float64), axis=2, keepdims=True)
    p = e * (1.0 / tot).astype(F32)
    if single_token:
        p = p.astype(F16).astype(F32)
    out = np.zeros((n, n_head, head_dim), F32)
    for j in range(Tn):
        out += p[:, :, j, None] * V[None, :, j, :]
    return out.reshape(n, n_head * head_dim)


def ffn_act(gate: np.ndarray, up: np.ndarray, kind: str) -> np.ndarray:
    gate = np.asarray(gate, F32)
    up = np.asarray(up, F32)
    if kind == "relu2":
        r = np.maximum(gate, F32(0))
        return (r * r) * up
    if kind == "silu":
        return (gate / (F32(1) + expf(-gate))) * up        # float32: g / (1 + expf(-g)) * up
    raise ValueError(f"unknown activation {kind}")


def lm_head(weight_f32: np.ndarray, y: np.ndarray, weight_t: np.ndarray | None = None) -> np.ndarray:
    """Final normed vector rounded to f16, then W·y accumulated in float32 (sequential over k).
    weight_t: optional contiguous transpose [d, V] of weight_f32 (speed only)."""
    y16 = np.asarray(y, F32).astype(F16).astype(F32)
    wt = weight_f32.T if weight_t is None else weight_t
    acc = np.zeros((y16.shape[0], wt.shape[1]), F32)
    for k in range(wt.shape[0]):
        acc += y16[:, k, None] * wt[k][None, :]
    return acc

"""Tensor types and formats, activation quantization and BitLinear of the NumPy reference
(part of tools/reference/bitnet_ref.py; written from /work/shared/spec/bitnet-gguf.md only,
no code shared with the Swift engine):
  * tensor type ids and byte sizes (spec §1.2, §3.1);
  * tensor decoders Q8_0/Q6_K/TQ1_0/TQ2_0/I2_S and the encoders used by the self-tests
    (§3.2, §3.5) — F32/F16/BF16 are decoded in ref_gguf.GGUFFile.dequantize;
  * per-token int8 activation quantization and BitLinear (§3.3, §4.5).

Float details the spec leaves open, fixed here (choices documented at each function):
  * BitLinear: ((float)Σ T·q / s) * α, then * scale tensor (I2_S); TQ: Σ_b d_b·(float)Σ_b T·q in
    block order, / s, then * scale tensor.
"""

from __future__ import annotations

import struct

import numpy as np

F32 = np.float32
F16 = np.float16


# --------------------------------------------------------------------------------------------
# Tensor types (spec §1.2, §3.1)
# --------------------------------------------------------------------------------------------

# tensor types (spec §1.2, §3.1 — fork meaning of 36)
GGML_F32, GGML_F16, GGML_Q8_0, GGML_BF16 = 0, 1, 8, 30
GGML_Q6_K = 14
GGML_TQ1_0, GGML_TQ2_0, GGML_I2_S = 34, 35, 36
TYPE_NAMES = {GGML_F32: "F32", GGML_F16: "F16", GGML_Q8_0: "Q8_0", GGML_BF16: "BF16", GGML_Q6_K: "Q6_K",
              GGML_TQ1_0: "TQ1_0", GGML_TQ2_0: "TQ2_0", GGML_I2_S: "I2_S"}
# (block size, bytes per block) for the regular types
_BLOCK = {GGML_F32: (1, 4), GGML_F16: (1, 2), GGML_BF16: (1, 2), GGML_Q8_0: (32, 34), GGML_Q6_K: (256, 210),
          GGML_TQ1_0: (256, 54), GGML_TQ2_0: (256, 66)}

QK_I2_S = 128
QK_K = 256


# Malformed GGUF content (container or tensor data); re-exported by ref_gguf and bitnet_ref.
class GGUFError(ValueError):
    pass


def tensor_nbytes(ttype: int, ne) -> int:
    n = 1
    for e in ne:
        n *= e
    if ttype == GGML_I2_S:
        if ne[0] % QK_I2_S:
            raise GGUFError(f"I2_S row length {ne[0]} is not a multiple of {QK_I2_S}")
        return n // 4 + 32
    if ttype not in _BLOCK:
        raise GGUFError(f"unsupported tensor type {ttype}")
    bs, ts = _BLOCK[ttype]
    if ne[0] % bs:
        raise GGUFError(f"row length {ne[0]} not a multiple of block size {bs} for type {ttype}")
    return n // bs * ts


# --------------------------------------------------------------------------------------------
# Tensor formats (spec §3.2, §3.5)
# --------------------------------------------------------------------------------------------

def dequantize_q8_0(raw: np.ndarray, n: int) -> np.ndarray:
    blocks = raw.reshape(n // 32, 34)
    d = blocks[:, 0:2].copy().view("<f2").astype(F32)          # [nb, 1]
    qs = blocks[:, 2:].view(np.int8).astype(F32)               # [nb, 32]
    return (qs * d).reshape(-1)


def dequantize_q6_k(raw: np.ndarray, n: int) -> np.ndarray:
    """Q6_K (ggml block_q6_K, 210 bytes per 256 values): ql[128] low nibbles, qh[64] high bit
    pairs, 16 int8 sub-scales, f16 d. In half h (128 values), for l < 32: value l takes the low
    nibble of ql[64h+l] and bits 0-1 of qh[32h+l]; l+32 the low nibble of ql[64h+l+32] and bits
    2-3; l+64 the high nibble of ql[64h+l] and bits 4-5; l+96 the high nibble of ql[64h+l+32] and
    bits 6-7. Value = d * scale[value index // 16] * (6-bit code - 32)."""
    blocks = raw.reshape(n // 256, 210)
    ql = blocks[:, :128].astype(np.int32).reshape(-1, 2, 64)
    qh = blocks[:, 128:192].astype(np.int32).reshape(-1, 2, 32)
    sc = blocks[:, 192:208].view(np.int8).astype(np.float64)
    d = blocks[:, 208:210].copy().view("<f2").astype(np.float64)      # [nb, 1]
    lo, hi = ql[:, :, :32], ql[:, :, 32:]
    parts = [(lo & 15) | ((qh & 3) << 4), (hi & 15) | (((qh >> 2) & 3) << 4),
             (lo >> 4) | (((qh >> 4) & 3) << 4), (hi >> 4) | (((qh >> 6) & 3) << 4)]
    codes = np.concatenate(parts, axis=2).reshape(-1, 256) - 32      # [nb, 256], value order
    scale = np.repeat(sc, 16, axis=1)                                 # [nb, 256]
    # float32 as the engine does: d · (scale · q) rounded once to float32 per value.
    return (d.astype(F32) * (scale * codes).astype(F32)).reshape(-1)


def decode_i2_s(raw: np.ndarray, M: int, K: int):
    """I2_S (spec §3.2): 128 values / 32 bytes, byte 32b+j holds elements 128b+j+32g at
    bit shift 6-2g; code = T+1; float32 alpha right after the M*K/4 code bytes."""
    n = M * K
    codes_b = raw[: n // 4].reshape(n // QK_I2_S, 32)
    groups = [(codes_b >> (6 - 2 * g)) & 3 for g in range(4)]        # each [nb, 32]
    codes = np.stack(groups, axis=1).reshape(M, K)                   # index 128b + 32g + j
    if np.any(codes == 3):
        raise GGUFError("I2_S code 3 found")
    alpha = raw[n // 4: n // 4 + 4].copy().view("<f4")[0]
    return codes.astype(np.int8) - 1, F32(alpha)


def encode_i2_s(T: np.ndarray, alpha: float) -> bytes:
    """Inverse of decode_i2_s (tail 28 bytes written as zeros)."""
    M, K = T.shape
    codes = (np.asarray(T, np.int16) + 1).astype(np.uint8).reshape(-1, 4, 32)
    b = np.zeros(codes.shape[0] * 32, np.uint8).reshape(-1, 32)
    for g in range(4):
        b |= codes[:, g, :] << (6 - 2 * g)
    return b.tobytes() + struct.pack("<f", alpha) + bytes(28)


def decode_tq2_0(raw: np.ndarray, M: int, K: int):
    """TQ2_0 (spec §3.5): per 256 values {qs[64], f16 d}; byte 32c+m, bits 2n..2n+1 hold
    element 128c+32n+m; value (t-1)*d."""
    nb = M * K // QK_K
    blocks = raw.reshape(nb, 66)
    qs = blocks[:, :64].reshape(nb, 2, 32)                            # [nb, c, m]
    t = np.stack([(qs >> (2 * n)) & 3 for n in range(4)], axis=2)     # [nb, c, n, m]
    T = t.reshape(M, K).astype(np.int8) - 1
    d = blocks[:, 64:66].copy().view("<f2").astype(F32).reshape(M, K // QK_K)
    if np.any(t == 3):
        raise GGUFError("TQ2_0 code 3 found")
    return T, d


def encode_tq2_0(T: np.ndarray, d: np.ndarray) -> bytes:
    M, K = T.shape
    nb = M * K // QK_K
    t = (np.asarray(T, np.int16) + 1).astype(np.uint8).reshape(nb, 2, 4, 32)   # [nb, c, n, m]
    qs = np.zeros((nb, 2, 32), np.uint8)
    for n in range(4):
        qs |= t[:, :, n, :] << (2 * n)
    dd = np.asarray(d, F16).reshape(nb, 1).view(np.uint8)
    return np.concatenate([qs.reshape(nb, 64), dd], axis=1).tobytes()


_POW3 = np.array([1, 3, 9, 27, 81], np.uint16)


def tq1_trits(byte_vals: np.ndarray, count: int) -> np.ndarray:
    """Decode `count` trits from TQ1_0 bytes: b = (byte*3^n) mod 256, t = (b*3) >> 8.
    Returns array [..., count]."""
    b = np.asarray(byte_vals, np.uint16)[..., None] * _POW3[:count]
    b &= 0xFF
    return ((b * 3) >> 8).astype(np.uint8)


def tq1_byte(trits) -> int:
    """Encode up to 5 trits (first = most significant; missing trailing trits are 0)."""
    q = 0
    tr = list(trits) + [0] * (5 - len(trits))
    for t in tr:
        q = q * 3 + int(t)
    return (q * 256 + 242) // 243


def decode_tq1_0(raw: np.ndarray, M: int, K: int):
    """TQ1_0 (spec §3.5): per 256 values {qs[48], qh[4], f16 d}."""
    nb = M * K // QK_K
    blocks = raw.reshape(nb, 54)
    qs_a = blocks[:, 0:32]
    qs_b = blocks[:, 32:48]
    qh = blocks[:, 48:52]
    a = tq1_trits(qs_a, 5)              # [nb, m(32), n(5)] element 32n + m
    b = tq1_trits(qs_b, 5)              # [nb, m(16), n(5)] element 160 + 16n + m
    c = tq1_trits(qh, 4)                # [nb, j(4),  n(4)] element 240 + 4n + j
    t = np.concatenate([a.transpose(0, 2, 1).reshape(nb, 160),
                        b.transpose(0, 2, 1).reshape(nb, 80),
                        c.transpose(0, 2, 1).reshape(nb, 16)], axis=1)
    if np.any(t > 2):
        raise GGUFError("TQ1_0 trit > 2 found")
    T = t.reshape(M, K).astype(np.int8) - 1
    d = blocks[:, 52:54].copy().view("<f2").astype(F32).reshape(M, K // QK_K)
    return T, d


def encode_tq1_0(T: np.ndarray, d: np.ndarray) -> bytes:
    M, K = T.shape
    nb = M * K // QK_K
    t = (np.asarray(T, np.int16) + 1).reshape(nb, 256)
    out = bytearray()
    dd = np.asarray(d, F16).reshape(nb)
    for i in range(nb):
        tb = t[i]
        for m in range(32):
            out.append(tq1_byte([tb[m + 32 * n] for n in range(5)]))
        for m in range(16):
            out.append(tq1_byte([tb[160 + m + 16 * n] for n in range(5)]))
        for j in range(4):
            out.append(tq1_byte([tb[240 + j + 4 * n] for n in range(4)]))
        out += dd[i:i + 1].tobytes()
    return bytes(out)


# --------------------------------------------------------------------------------------------
# Activation quantization and BitLinear (spec §3.3, §4.5)
# --------------------------------------------------------------------------------------------

def quantize_act(x: np.ndarray):
    """Per-token int8 absmax (spec §3.3). x: [n, K] float32.
    Returns q int8 [n, K], s float32 [n], sum int64 [n]."""
    x = np.asarray(x, F32)
    if x.ndim == 1:
        x = x[None, :]
    amax = np.max(np.abs(x.astype(np.float64)), axis=1)
    amax = np.maximum(amax, 1e-5)
    s = (127.0 / amax).astype(F32)
    v = x * s[:, None]                                  # float32 product
    q = np.clip(np.rint(v), -128, 127).astype(np.int8)   # rint = round half to even
    return q, s, q.astype(np.int64).sum(axis=1)


class TernaryWeight:
    """A ternary matrix T [M, K] in {-1,0,1} with either a tensor alpha (I2_S) or per-256-block
    f16 scales d [M, K/256] (TQ1_0/TQ2_0), plus an optional per-tensor F32 scale tensor."""

    def __init__(self, kind, T, alpha=None, d=None, scale=None):
        self.kind = kind
        self.T = np.asarray(T, np.int8)
        self.M, self.K = self.T.shape
        self.alpha = None if alpha is None else F32(alpha)
        self.d = None if d is None else np.asarray(d, F32)
        self.scale = None if scale is None else F32(scale)
        self._T64 = None

    @property
    def T64(self):
        if self._T64 is None:
            self._T64 = self.T.astype(np.float64)
        return self._T64

    def dequantize(self) -> np.ndarray:
        if self.kind == "i2_s":
            return self.T.astype(F32) * self.alpha
        return (self.T.astype(F32).reshape(self.M, -1, QK_K) * self.d[:, :, None]).reshape(self.M, self.K)

    def int_dot(self, q: np.ndarray) -> np.ndarray:
        """Σ_k T[m,k]·q[k] for q int8 [n, K] → int64 [n, M] (exact: float64 sums of
        integers below 2^53)."""
        return np.rint(q.astype(np.float64) @ self.T64.T).astype(np.int64)

    def block_dots(self, q: np.ndarray) -> np.ndarray:
        """Per-256-block Σ T·q → int64 [n, M, nb]."""
        n = q.shape[0]
        nb = self.K // QK_K
        q64 = q.astype(np.float64).reshape(n, nb, QK_K)
        T64 = self.T64.reshape(self.M, nb, QK_K)
        out = np.empty((n, self.M, nb), np.int64)
        for b in range(nb):
            out[:, :, b] = np.rint(q64[:, b, :] @ T64[:, b, :].T).astype(np.int64)
        return out

    def forward(self, x: np.ndarray):
        """BitLinear (spec §3.3/§4.5). Returns (dot int64 [n, M] or None for TQ, y float32 [n, M])."""
        q, s, _ = quantize_act(x)
        if self.kind == "i2_s":
            dot = self.int_dot(q)
            y = (dot.astype(F32) / s[:, None]) * self.alpha
        else:
            dot = None
            bd = self.block_dots(q)
            acc = np.zeros((q.shape[0], self.M), F32)
            for b in range(bd.shape[2]):
                acc = acc + self.d[None, :, b] * bd[:, :, b].astype(F32)
            y = acc / s[:, None]
        if self.scale is not None:
            y = y * self.scale
        return dot, y.astype(F32)


def bitlinear(w: TernaryWeight, x):
    return w.forward(x)

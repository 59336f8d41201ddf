#!/usr/bin/env python3
"""Independent NumPy reference implementation of BitNet b1.58 inference.

Written from /work/shared/spec/bitnet-gguf.md only (no code shared with the Swift engine):
  * GGUF v2/v3 reader (spec §1), tensor decoders F32/F16/BF16/Q8_0/TQ1_0/TQ2_0/I2_S (§3.2, §3.5);
  * per-token int8 activation quantization and BitLinear (§3.3, §4.5);
  * the forward pass of §4 for `bitnet-b1.58`/`bitnet-25` (ReLU²) and mainline `bitnet`
    (activation from `bitnet.hidden_activation`, SiLU when absent, optional per-tensor scale tensors);
  * the storage precision of §4.7 (F16 KV cache, F16 q, F16 probabilities on 1-token steps,
    F16-rounded final vector before the F16 LM head).

Float details the spec leaves open, fixed here (choices documented at each function):
  * RMSNorm: Σx² in float64, then the float32 expression 1.0f/sqrtf((float)mean + eps) (§4.2);
  * cos/sin (RoPE), exp (softmax, SiLU) and powf (RoPE theta scale) are the C library's float32
    functions via ctypes (float64-rounded fallback if libm is unavailable or BITNET_REF_NO_LIBM=1);
  * every float dot product (attention K·q and V·p, LM head) is accumulated in float32 sequentially
    in index order, no fused multiply-add;
  * BitLinear: ((float)Σ T·q / s) * α, then * scale tensor (I2_S); TQ: Σ_b d_b·(float)Σ_b T·q in
    block order, / s, then * scale tensor.

CLI:
  bitnet_ref.py logits MODEL --token-ids 1,2,3 [--prompt-len P] --out F
  bitnet_ref.py greedy MODEL --token-ids 1,2,3 --n 32
  bitnet_ref.py stages MODEL [--token-ids 1,2,3] --dump DIR
"""

from __future__ import annotations

import argparse
import os
import struct
import sys
from dataclasses import dataclass, field

import numpy as np

F32 = np.float32
F16 = np.float16

# --------------------------------------------------------------------------------------------
# GGUF container (spec §1)
# --------------------------------------------------------------------------------------------

GGUF_MAGIC = b"GGUF"

# metadata value types (spec §1.1)
T_UINT8, T_INT8, T_UINT16, T_INT16, T_UINT32, T_INT32, T_FLOAT32, T_BOOL, T_STRING, T_ARRAY, \
    T_UINT64, T_INT64, T_FLOAT64 = range(13)

_SCALAR_FMT = {
    T_UINT8: ("<B", 1), T_INT8: ("<b", 1), T_UINT16: ("<H", 2), T_INT16: ("<h", 2),
    T_UINT32: ("<I", 4), T_INT32: ("<i", 4), T_FLOAT32: ("<f", 4), T_BOOL: ("<B", 1),
    T_UINT64: ("<Q", 8), T_INT64: ("<q", 8), T_FLOAT64: ("<d", 8),
}
_SCALAR_NP = {
    T_UINT8: "<u1", T_INT8: "<i1", T_UINT16: "<u2", T_INT16: "<i2", T_UINT32: "<u4",
    T_INT32: "<i4", T_FLOAT32: "<f4", T_BOOL: "<u1", T_UINT64: "<u8", T_INT64: "<i8",
    T_FLOAT64: "<f8",
}

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


class GGUFError(ValueError):
    pass


@dataclass
class TensorInfo:
    name: str
    ne: tuple          # ggml order: ne[0] innermost
    type: int
    offset: int        # relative to data_start
    nbytes: int = 0
    abs_offset: int = 0

    @property
    def shape(self):   # numpy (row-major) shape
        return tuple(reversed(self.ne))

    @property
    def n_elements(self):
        n = 1
        for e in self.ne:
            n *= e
        return n


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


class _Cursor:
    def __init__(self, buf, pos=0):
        self.buf, self.pos, self.end = buf, pos, len(buf)

    def take(self, n):
        if n < 0 or n > self.end - self.pos:
            raise GGUFError(f"truncated file: need {n} bytes at offset {self.pos}")
        b = self.buf[self.pos:self.pos + n]
        self.pos += n
        return b

    def u32(self):
        return struct.unpack("<I", self.take(4))[0]

    def u64(self):
        return struct.unpack("<Q", self.take(8))[0]

    def string(self):
        n = self.u64()
        if n > 64 * 1024 * 1024:
            raise GGUFError(f"string too long ({n})")
        return bytes(self.take(n)).decode("utf-8")

    def scalar(self, t):
        if t == T_STRING:
            return self.string()
        if t not in _SCALAR_FMT:
            raise GGUFError(f"bad metadata value type {t}")
        fmt, n = _SCALAR_FMT[t]
        v = struct.unpack(fmt, self.take(n))[0]
        return bool(v) if t == T_BOOL else v

    def value(self, t):
        if t != T_ARRAY:
            return self.scalar(t)
        et = self.u32()
        count = self.u64()
        if et == T_ARRAY:
            raise GGUFError("nested arrays are not supported")
        if et == T_STRING:
            if count * 8 > self.end - self.pos:
                raise GGUFError("array count exceeds file size")
            return [self.string() for _ in range(count)]
        if et not in _SCALAR_NP:
            raise GGUFError(f"bad array element type {et}")
        size = _SCALAR_FMT[et][1]
        raw = self.take(count * size)
        arr = np.frombuffer(raw, dtype=_SCALAR_NP[et]).copy()
        return arr.astype(bool) if et == T_BOOL else arr


class GGUFFile:
    """Parses a GGUF v2/v3 file from raw bytes."""

    def __init__(self, path_or_bytes):
        if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
            self.buf = memoryview(bytes(path_or_bytes))
        else:
            with open(path_or_bytes, "rb") as f:
                self.buf = memoryview(f.read())
        c = _Cursor(self.buf)
        if bytes(c.take(4)) != GGUF_MAGIC:
            raise GGUFError("bad magic")
        self.version = c.u32()
        if self.version not in (2, 3):
            raise GGUFError(f"unsupported GGUF version {self.version}")
        n_tensors = c.u64()
        n_kv = c.u64()
        if n_tensors > 1_000_000 or n_kv > 1_000_000:
            raise GGUFError("implausible counts")
        self.metadata: dict = {}
        self.metadata_types: dict = {}
        for _ in range(n_kv):
            key = c.string()
            vt = c.u32()
            if key in self.metadata:
                raise GGUFError(f"duplicate key {key}")
            self.metadata[key] = c.value(vt)
            self.metadata_types[key] = vt
        self.tensors: dict = {}
        self.tensor_order: list = []
        for _ in range(n_tensors):
            name = c.string()
            nd = c.u32()
            if not 1 <= nd <= 4:
                raise GGUFError(f"tensor {name}: bad n_dims {nd}")
            ne = tuple(c.u64() for _ in range(nd))
            if any(e < 1 for e in ne):
                raise GGUFError(f"tensor {name}: bad dims {ne}")
            tt = c.u32()
            off = c.u64()
            if name in self.tensors:
                raise GGUFError(f"duplicate tensor {name}")
            self.tensors[name] = TensorInfo(name, ne, tt, off)
            self.tensor_order.append(name)
        align = self.metadata.get("general.alignment", 32)
        if not isinstance(align, int) or align <= 0 or align & (align - 1):
            raise GGUFError(f"bad alignment {align}")
        self.alignment = align
        self.data_start = (c.pos + align - 1) // align * align
        if self.data_start > len(self.buf):
            raise GGUFError("data section starts beyond end of file")
        for ti in self.tensors.values():
            if ti.offset % align:
                raise GGUFError(f"tensor {ti.name}: misaligned offset")
            ti.nbytes = tensor_nbytes(ti.type, ti.ne)
            ti.abs_offset = self.data_start + ti.offset
            if ti.abs_offset + ti.nbytes > len(self.buf):
                raise GGUFError(f"tensor {ti.name}: data beyond end of file")

    def raw(self, name) -> np.ndarray:
        ti = self.tensors[name]
        return np.frombuffer(self.buf[ti.abs_offset:ti.abs_offset + ti.nbytes], dtype=np.uint8)

    def get(self, key, default=None):
        return self.metadata.get(key, default)

    def dequantize(self, name) -> np.ndarray:
        """Any supported tensor as float32 in numpy shape (reversed ne)."""
        ti = self.tensors[name]
        raw = self.raw(name)
        t = ti.type
        if t == GGML_F32:
            out = raw.view("<f4").astype(F32)
        elif t == GGML_F16:
            out = raw.view("<f2").astype(F32)
        elif t == GGML_BF16:
            out = (raw.view("<u2").astype(np.uint32) << 16).view(F32)
        elif t == GGML_Q8_0:
            out = dequantize_q8_0(raw, ti.n_elements)
        elif t == GGML_Q6_K:
            out = dequantize_q6_k(raw, ti.n_elements)
        elif t in (GGML_I2_S, GGML_TQ1_0, GGML_TQ2_0):
            tw = self.ternary(name)
            out = tw.dequantize().reshape(-1)
        else:
            raise GGUFError(f"tensor {name}: unsupported type {t}")
        return out.reshape(ti.shape)

    def ternary(self, name) -> "TernaryWeight":
        ti = self.tensors[name]
        if len(ti.ne) != 2 and not (len(ti.ne) > 2 and all(e == 1 for e in ti.ne[2:])):
            raise GGUFError(f"tensor {name}: ternary tensor must be 2-D")
        K, M = ti.ne[0], ti.ne[1]
        raw = self.raw(name)
        if ti.type == GGML_I2_S:
            T, alpha = decode_i2_s(raw, M, K)
            return TernaryWeight("i2_s", T, alpha=alpha)
        if ti.type == GGML_TQ2_0:
            T, d = decode_tq2_0(raw, M, K)
            return TernaryWeight("tq2_0", T, d=d)
        if ti.type == GGML_TQ1_0:
            T, d = decode_tq1_0(raw, M, K)
            return TernaryWeight("tq1_0", T, d=d)
        raise GGUFError(f"tensor {name}: type {ti.type} is not ternary")


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
# Numerics (spec §3.3, §4.2–§4.5, §4.7)
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


def rope_neox(x: np.ndarray, positions, n_heads: int, head_dim: int, n_rot: int, base: float) -> np.ndarray:
    """NEOX RoPE (pairs i, i + n_rot/2) on each head; iterated float32 theta (spec §4.3)."""
    x = np.asarray(x, F32)
    n = x.shape[0]
    half = n_rot // 2
    theta_scale = rope_theta_scale(base, n_rot)
    theta = np.empty((n, half), F32)
    theta[:, 0] = np.asarray(positions, F32)
    for i in range(1, half):
        theta[:, i] = theta[:, i - 1] * theta_scale
    cos, sin = _cos_sin_f32(theta)
    cos, sin = cos[:, None, :], sin[:, None, :]
    xr = x.reshape(n, n_heads, head_dim).copy()
    x0 = xr[:, :, :half].copy()
    x1 = xr[:, :, half:n_rot].copy()
    xr[:, :, :half] = x0 * cos - x1 * sin
    xr[:, :, half:n_rot] = x0 * sin + x1 * cos
    return xr.reshape(n, n_heads * head_dim)


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


# --------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------

LINEARS = ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")
B158_ARCHS = ("bitnet-b1.58", "bitnet-25")


@dataclass
class Layer:
    attn_norm: np.ndarray
    attn_sub_norm: np.ndarray
    ffn_norm: np.ndarray
    ffn_sub_norm: np.ndarray
    lin: dict = field(default_factory=dict)


class KVCache:
    def __init__(self, n_layer, n_ctx, width):
        self.k = [np.zeros((n_ctx, width), F16) for _ in range(n_layer)]
        self.v = [np.zeros((n_ctx, width), F16) for _ in range(n_layer)]
        self.n = 0
        self.n_ctx = n_ctx


class BitNetModel:
    def __init__(self, path_or_gguf):
        g = path_or_gguf if isinstance(path_or_gguf, GGUFFile) else GGUFFile(path_or_gguf)
        self.gguf = g
        arch = g.get("general.architecture")
        self.arch = arch
        if arch in B158_ARCHS:
            self.act = "relu2"
        elif arch == "bitnet":
            act = g.get("bitnet.hidden_activation", "silu")
            if act not in ("relu2", "silu"):
                raise GGUFError(f"unsupported bitnet.hidden_activation {act!r}")
            self.act = act
        else:
            raise GGUFError(f"unsupported architecture {arch!r}")

        def hp(suffix, default=None):
            v = g.get(f"{arch}.{suffix}", default)
            if v is None:
                raise GGUFError(f"missing key {arch}.{suffix}")
            return v

        self.n_embd = int(hp("embedding_length"))
        self.n_layer = int(hp("block_count"))
        self.n_ff = int(hp("feed_forward_length"))
        self.n_head = int(hp("attention.head_count"))
        self.n_head_kv = int(hp("attention.head_count_kv", self.n_head))
        self.head_dim = self.n_embd // self.n_head
        self.n_rot = int(hp("rope.dimension_count", self.head_dim))
        self.rope_base = float(F32(hp("rope.freq_base", 10000.0)))
        self.eps = float(F32(hp("attention.layer_norm_rms_epsilon", 1e-5)))
        self.n_ctx = int(hp("context_length", 4096))
        if self.n_embd % self.n_head or self.n_head % self.n_head_kv or self.n_rot % 2 \
                or self.n_rot > self.head_dim:
            raise GGUFError("inconsistent attention hyper-parameters")

        self.tok_embd = g.dequantize("token_embd.weight")            # [V, d]
        self.n_vocab = self.tok_embd.shape[0]
        self.output_tied = "output.weight" not in g.tensors
        self.lm_weight = self.tok_embd if self.output_tied else g.dequantize("output.weight")
        self.lm_weight_t = np.ascontiguousarray(self.lm_weight.T)
        self.output_norm = g.dequantize("output_norm.weight")
        self.layers = []
        for L in range(self.n_layer):
            p = f"blk.{L}."
            layer = Layer(
                attn_norm=g.dequantize(p + "attn_norm.weight"),
                attn_sub_norm=g.dequantize(p + "attn_sub_norm.weight"),
                ffn_norm=g.dequantize(p + "ffn_norm.weight"),
                ffn_sub_norm=g.dequantize(p + "ffn_sub_norm.weight"),
            )
            for name in LINEARS:
                w = g.ternary(p + name + ".weight")
                sname = p + name + ".scale"
                if sname in g.tensors:
                    sv = g.dequantize(sname).reshape(-1)
                    if sv.size != 1:
                        raise GGUFError(f"{sname}: expected a scalar")
                    w.scale = F32(sv[0])
                layer.lin[name] = w
            self.layers.append(layer)
        self.weight_kind = self.layers[0].lin["attn_q"].kind if self.layers else None
        tt = g.get("tokenizer.ggml.token_type")
        self.token_type = None if tt is None else np.asarray(tt)

    def new_cache(self, n_ctx=None):
        return KVCache(self.n_layer, n_ctx or self.n_ctx, self.n_head_kv * self.head_dim)

    def forward(self, ids, cache: KVCache, dump: dict | None = None) -> np.ndarray:
        """Processes `ids` as one batch at positions cache.n.. ; returns logits float32 [n, V].
        If `dump` is a dict, the stage tensors of this batch are stored in it (engine names)."""
        ids = np.asarray(ids, np.int64)
        n = len(ids)
        start = cache.n
        if start + n > cache.n_ctx:
            raise ValueError("context overflow")
        if np.any(ids < 0) or np.any(ids >= self.n_vocab):
            raise ValueError("token id out of range")
        pos = np.arange(start, start + n)
        H, Hkv, D = self.n_head, self.n_head_kv, self.head_dim

        def put(name, arr):
            if dump is not None:
                dump[name] = arr.copy()

        h = self.tok_embd[ids].astype(F32)
        for L, layer in enumerate(self.layers):
            P = f"l{L}."
            put(P + "in", h)
            a = rmsnorm(h, layer.attn_norm, self.eps)
            put(P + "attn_norm", a)
            outs = {}
            for nm in ("attn_q", "attn_k", "attn_v"):
                dot, y = layer.lin[nm].forward(a)
                if dot is not None:
                    put(P + nm + ".dot", dot.astype(np.int32))
                put(P + nm, y)
                outs[nm] = y
            qr = rope_neox(outs["attn_q"], pos, H, D, self.n_rot, self.rope_base)
            kr = rope_neox(outs["attn_k"], pos, Hkv, D, self.n_rot, self.rope_base)
            put(P + "q_rope", qr)
            put(P + "k_rope", kr)
            cache.k[L][start:start + n] = kr.astype(F16)
            cache.v[L][start:start + n] = outs["attn_v"].astype(F16)
            o = attention(qr, cache.k[L][:start + n], cache.v[L][:start + n], pos, H, Hkv, D,
                          single_token=(n == 1))
            put(P + "attn", o)
            o = rmsnorm(o, layer.attn_sub_norm, self.eps)
            put(P + "attn_sub_norm", o)
            dot, o = layer.lin["attn_output"].forward(o)
            if dot is not None:
                put(P + "attn_output.dot", dot.astype(np.int32))
            put(P + "attn_output", o)
            h = h + o
            put(P + "ffn_in", h)
            f = rmsnorm(h, layer.ffn_norm, self.eps)
            put(P + "ffn_norm", f)
            gu = {}
            for nm in ("ffn_gate", "ffn_up"):
                dot, y = layer.lin[nm].forward(f)
                if dot is not None:
                    put(P + nm + ".dot", dot.astype(np.int32))
                put(P + nm, y)
                gu[nm] = y
            z = ffn_act(gu["ffn_gate"], gu["ffn_up"], self.act)
            put(P + "ffn_act", z)
            z = rmsnorm(z, layer.ffn_sub_norm, self.eps)
            put(P + "ffn_sub_norm", z)
            dot, z = layer.lin["ffn_down"].forward(z)
            if dot is not None:
                put(P + "ffn_down.dot", dot.astype(np.int32))
            put(P + "ffn_down", z)
            h = h + z
        y = rmsnorm(h, self.output_norm, self.eps)
        put("out_norm", y)
        logits = lm_head(self.lm_weight, y, self.lm_weight_t)
        put("logits", logits)
        cache.n += n
        return logits

    def logits(self, ids, prompt_len: int | None = None) -> np.ndarray:
        """First prompt_len ids (default all) as one batch, the rest one at a time."""
        ids = list(ids)
        P = len(ids) if prompt_len is None else prompt_len
        if not 1 <= P <= len(ids):
            raise ValueError("bad prompt length")
        if len(ids) > self.n_ctx:
            raise ValueError("more ids than the model's context length")
        cache = self.new_cache(len(ids))
        rows = [self.forward(ids[:P], cache)]
        for t in ids[P:]:
            rows.append(self.forward([t], cache))
        return np.concatenate(rows, axis=0)

    def greedy(self, prompt, n: int):
        cache = self.new_cache(len(prompt) + n)
        lg = self.forward(list(prompt), cache)[-1]
        out = []
        for i in range(n):
            t = int(np.argmax(lg))
            out.append(t)
            if i + 1 < n:
                lg = self.forward([t], cache)[-1]
        return out

    def stages(self, ids) -> dict:
        dump: dict = {}
        self.forward(list(ids), self.new_cache(len(ids)), dump=dump)
        return dump


# --------------------------------------------------------------------------------------------
# Stage dumps (same format as `bitnetd logits --dump-stages`)
# --------------------------------------------------------------------------------------------

def write_stages(dump: dict, directory: str):
    os.makedirs(directory, exist_ok=True)
    lines = []
    for name, arr in dump.items():
        arr = np.asarray(arr)
        if arr.dtype.kind in "iu":
            dt, a = "i32", arr.astype("<i4")
        else:
            dt, a = "f32", arr.astype("<f4")
        a2 = a.reshape(a.shape[0], -1)
        lines.append(f"{name}\t{dt}\t{a2.shape[0]}\t{a2.shape[1]}\n")
        a2.tofile(os.path.join(directory, name + ".bin"))
    with open(os.path.join(directory, "manifest.tsv"), "w") as f:
        f.writelines(lines)


def read_stages(directory: str) -> dict:
    out = {}
    with open(os.path.join(directory, "manifest.tsv")) as f:
        for line in f:
            line = line.rstrip("\n")
            if not line.strip():
                continue
            name, dt, rows, cols = line.split("\t")
            rows, cols = int(rows), int(cols)
            dtype = {"f32": "<f4", "i32": "<i4"}[dt]
            a = np.fromfile(os.path.join(directory, name + ".bin"), dtype=dtype)
            if a.size != rows * cols:
                raise ValueError(f"{name}: {a.size} values, manifest says {rows}x{cols}")
            out[name] = a.reshape(rows, cols)
    return out


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------

def _parse_ids(s: str):
    return [int(t) for t in s.replace(" ", "").split(",") if t != ""]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("logits")
    p.add_argument("model")
    p.add_argument("--token-ids", required=True)
    p.add_argument("--prompt-len", type=int)
    p.add_argument("--out", required=True)
    p = sub.add_parser("greedy")
    p.add_argument("model")
    p.add_argument("--token-ids", required=True)
    p.add_argument("--n", type=int, default=32)
    p = sub.add_parser("stages")
    p.add_argument("model")
    p.add_argument("--token-ids", default=None, help="default: 1..8")
    p.add_argument("--dump", required=True)
    a = ap.parse_args(argv)

    model = BitNetModel(a.model)
    if a.cmd == "logits":
        lg = model.logits(_parse_ids(a.token_ids), a.prompt_len)
        lg.astype("<f4").tofile(a.out)
    elif a.cmd == "greedy":
        print(",".join(str(t) for t in model.greedy(_parse_ids(a.token_ids), a.n)))
    elif a.cmd == "stages":
        ids = _parse_ids(a.token_ids) if a.token_ids else [i % model.n_vocab for i in range(1, 9)]
        write_stages(model.stages(ids), a.dump)
    return 0


if __name__ == "__main__":
    sys.exit(main())

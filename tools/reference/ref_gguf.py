"""GGUF v2/v3 reader (spec §1) of the NumPy reference (part of tools/reference/bitnet_ref.py;
written from /work/shared/spec/bitnet-gguf.md only, no code shared with the Swift engine).
Tensor type ids, byte sizes and decoders live in ref_quant.py."""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from ref_quant import (GGML_BF16, GGML_F16, GGML_F32, GGML_I2_S, GGML_Q6_K, GGML_Q8_0, GGML_TQ1_0,
                       GGML_TQ2_0, GGUFError, TernaryWeight, decode_i2_s, decode_tq1_0, decode_tq2_0,
                       dequantize_q6_k, dequantize_q8_0, tensor_nbytes)

F32 = np.float32


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

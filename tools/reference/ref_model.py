"""Model loading and the forward pass of the NumPy reference (part of
tools/reference/bitnet_ref.py; written from /work/shared/spec/bitnet-gguf.md only, no code shared
with the Swift engine):
  * the forward pass of §4 for `bitnet-b1.58`/`bitnet-25` (ReLU²) and mainline `bitnet`
    (activation from `bitnet.hidden_activation`, SiLU when absent, optional per-tensor scale tensors);
  * the F16 KV cache of §4.7;
  * stage dumps in the format of `bitnetd logits --dump-stages`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from ref_gguf import GGUFError, GGUFFile
from ref_numerics import attention, ffn_act, lm_head, rmsnorm, rope_neox

F32 = np.float32
F16 = np.float16


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

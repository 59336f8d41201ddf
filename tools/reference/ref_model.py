"""Model loading and the forward pass of the NumPy reference (part of
tools/reference/bitnet_ref.py; written from /work/shared/spec/bitnet-gguf.md and
/work/shared/spec/model-families.md only, no code shared with the Swift engine):
  * the three graphs (GRAPHS), chosen from the file like model-families §10 rule 1 or named
    explicitly (`graph=`, CLI `--graph`):
      - `bitnet-b1.58` (archs `bitnet-b1.58`, `bitnet-25`): spec §4 — ReLU², sub-norms, NEOX RoPE;
      - `bitnet` (mainline/1bitLLM, model-families §3.2): sub-norms, NEOX RoPE, activation from
        `<arch>.hidden_activation` (SiLU when absent);
      - `llama` (Llama3-8B-1.58, Falcon3, Falcon-E; model-families §2.2): SwiGLU, no sub-norms,
        NORM RoPE, optional attention biases, `output.weight` when present;
    with optional per-tensor scale tensors for the two bitnet graphs;
  * the F16 KV cache of §4.7;
  * stage dumps in the format of `bitnetd logits --dump-stages`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

import numpy as np

from ref_gguf import GGUFError, GGUFFile
from ref_numerics import ROPE_FUNCS, attention, ffn_act, lm_head, rmsnorm
from ref_quant import GGML_I2_S

F32 = np.float32
F16 = np.float16


# --------------------------------------------------------------------------------------------
# Graphs
# --------------------------------------------------------------------------------------------

LINEARS = ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")
ATTN_LINEARS = ("attn_q", "attn_k", "attn_v", "attn_output")
B158_ARCHS = ("bitnet-b1.58", "bitnet-25")
BITNET_ARCHS = B158_ARCHS + ("bitnet",)
# general.file_type values of the fork that mark a file whose type 36 means I2_S (TL1, TL2, I2_S)
FORK_FILE_TYPES = (38, 39, 40)


@dataclass(frozen=True)
class Graph:
    """What distinguishes one forward graph from another (one row per graph)."""
    name: str
    sub_norms: bool        # RMSNorm(attn_sub_norm) before attn_output, (ffn_sub_norm) before ffn_down
    rope: str              # "neox" (pairs i, i + n_rot/2) or "norm" (pairs 2i, 2i + 1)
    untied_head: bool      # output.weight is the head when present (else token_embd, always)
    scale_tensors: bool    # optional blk.N.<linear>.scale (F32 {1}) multiplied after the matmul
    attn_biases: bool      # optional blk.N.attn_{q,k,v,output}.bias added after the BitLinear
    rot_is_head: bool      # rope.dimension_count must equal head_dim (llama.cpp: "invalid n_rot")


GRAPH_TABLE = {
    # spec §4; model-families §3.3 (F multiplies by tok_embd even when output.weight exists)
    "bitnet-b1.58": Graph("bitnet-b1.58", sub_norms=True, rope="neox", untied_head=False,
                          scale_tensors=True, attn_biases=False, rot_is_head=True),
    # model-families §3.2 (the tensor table has no output; head = tok_embd)
    "bitnet": Graph("bitnet", sub_norms=True, rope="neox", untied_head=False,
                    scale_tensors=True, attn_biases=False, rot_is_head=False),
    # model-families §2.2
    "llama": Graph("llama", sub_norms=False, rope="norm", untied_head=True,
                   scale_tensors=False, attn_biases=True, rot_is_head=True),
}
GRAPHS = tuple(GRAPH_TABLE)

# The tensors the `llama` graph reads; llama.cpp refuses a file with any other tensor ("wrong
# number of tensors"), and so does the reference rather than ignore what it does not implement.
_LLAMA_TENSOR = re.compile(
    r"(token_embd|output_norm|output)\.weight"
    r"|blk\.\d+\.(attn_norm|attn_q|attn_k|attn_v|attn_output|ffn_norm|ffn_gate|ffn_up|ffn_down)\.weight"
    r"|blk\.\d+\.(attn_q|attn_k|attn_v|attn_output)\.bias")


def select_graph(g: GGUFFile, graph: str = "auto") -> tuple:
    """(graph name, reason). `graph` other than "auto" is used as given. Auto follows
    model-families §10 rule 1: llama → llama; bitnet → bitnet; bitnet-25 → bitnet-b1.58;
    bitnet-b1.58 → bitnet-b1.58, unless the file is a 1bitLLM model written by the 2026 converter
    (§1.1): SentencePiece vocabulary (tokenizer.ggml.model "llama"), 24 or 26 layers and as many
    KV heads as heads → bitnet. (The spec also names the 32002-token vocabulary of those models;
    the rule does not require that count.)"""
    arch = g.get("general.architecture")
    if graph != "auto":
        if graph not in GRAPH_TABLE:
            raise GGUFError(f"unknown graph {graph!r} (expected auto or one of {', '.join(GRAPHS)})")
        return graph, f"graph {graph} requested (file architecture {arch!r})"
    if arch == "llama":
        return "llama", "architecture llama"
    if arch == "bitnet":
        return "bitnet", "architecture bitnet"
    if arch == "bitnet-25":
        return "bitnet-b1.58", "architecture bitnet-25 (the earlier name of bitnet-b1.58)"
    if arch == "bitnet-b1.58":
        tok = g.get("tokenizer.ggml.model")
        n_layer = g.get(f"{arch}.block_count")
        n_head = g.get(f"{arch}.attention.head_count")
        n_head_kv = g.get(f"{arch}.attention.head_count_kv", n_head)
        if tok == "llama" and n_layer in (24, 26) and n_head is not None and n_head == n_head_kv:
            return "bitnet", (f"architecture bitnet-b1.58 with a SentencePiece vocabulary, {n_layer} "
                              f"layers and {n_head} heads = KV heads: a 1bitLLM model written by a "
                              f"2026 converter, which runs the bitnet graph (SiLU)")
        return "bitnet-b1.58", "architecture bitnet-b1.58"
    raise GGUFError(f"unsupported architecture {arch!r}")


# --------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------

@dataclass
class Layer:
    attn_norm: np.ndarray
    ffn_norm: np.ndarray
    attn_sub_norm: np.ndarray | None = None
    ffn_sub_norm: np.ndarray | None = None
    lin: dict = field(default_factory=dict)
    bias: dict = field(default_factory=dict)       # linear name → float32 [M]


class KVCache:
    def __init__(self, n_layer, n_ctx, width):
        self.k = [np.zeros((n_ctx, width), F16) for _ in range(n_layer)]
        self.v = [np.zeros((n_ctx, width), F16) for _ in range(n_layer)]
        self.n = 0
        self.n_ctx = n_ctx


class BitNetModel:
    """A GGUF model run by one of GRAPHS. graph: "auto" (select_graph) or a graph name."""

    def __init__(self, path_or_gguf, graph: str = "auto"):
        g = path_or_gguf if isinstance(path_or_gguf, GGUFFile) else GGUFFile(path_or_gguf)
        self.gguf = g
        arch = g.get("general.architecture")
        self.arch = arch
        self.graph, self.graph_reason = select_graph(g, graph or "auto")
        spec = GRAPH_TABLE[self.graph]
        self.spec = spec
        if self.graph == "bitnet-b1.58":
            self.act = "relu2"
        elif self.graph == "bitnet":
            act = g.get(f"{arch}.hidden_activation", "silu")
            if act not in ("relu2", "silu"):
                raise GGUFError(f"unsupported {arch}.hidden_activation {act!r}")
            self.act = act
        else:
            self.act = "silu"

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
        if self.n_head < 1 or self.n_head_kv < 1 or self.n_embd % self.n_head \
                or self.n_head % self.n_head_kv:
            raise GGUFError(f"inconsistent attention hyper-parameters: embedding {self.n_embd}, "
                            f"heads {self.n_head}, kv heads {self.n_head_kv}")
        self.head_dim = self.n_embd // self.n_head
        for key in ("attention.key_length", "attention.value_length"):
            v = g.get(f"{arch}.{key}")
            if v is not None and int(v) != self.head_dim:
                raise GGUFError(f"{arch}.{key} = {v} differs from embedding/heads = {self.head_dim}; "
                                f"not supported")
        self.n_rot = int(hp("rope.dimension_count", self.head_dim))
        if self.n_rot % 2 or self.n_rot > self.head_dim or self.n_rot < 2 \
                or (spec.rot_is_head and self.n_rot != self.head_dim):
            raise GGUFError(f"{arch}.rope.dimension_count = {self.n_rot} is invalid for head_dim "
                            f"{self.head_dim} (graph {self.graph})")
        self.rope_base = float(F32(hp("rope.freq_base", 10000.0)))
        # llama.cpp reads the epsilon as a required key for the llama graph (model-families §2.2)
        eps = hp("attention.layer_norm_rms_epsilon", None if self.graph == "llama" else 1e-5)
        self.eps = float(F32(eps))
        self.n_ctx = int(hp("context_length", 4096))

        self._check_inventory()
        # Mainline ggml reuses id 36; spec §3.1: read it as I2_S only in a BitNet architecture or
        # a file whose general.file_type is one of the fork's.
        if arch not in BITNET_ARCHS and g.get("general.file_type") not in FORK_FILE_TYPES:
            i2s = [t.name for t in g.tensors.values() if t.type == GGML_I2_S]
            if i2s:
                raise GGUFError(f"tensor {i2s[0]}: type 36 is I2_S only in a BitNet architecture or "
                                f"with general.file_type 38/39/40 (architecture {arch!r}, file_type "
                                f"{g.get('general.file_type')!r})")
        d, F, H, Hkv, D = self.n_embd, self.n_ff, self.n_head, self.n_head_kv, self.head_dim
        self.tok_embd = self._tensor("token_embd.weight", None, d)        # [V, d]
        self.n_vocab = self.tok_embd.shape[0]
        vs = g.get(f"{arch}.vocab_size")
        if vs is not None and int(vs) != self.n_vocab:
            raise GGUFError(f"{arch}.vocab_size = {vs} but token_embd.weight has {self.n_vocab} rows")
        # The head: output.weight for llama when present; the bitnet graphs always multiply by
        # token_embd (model-families §10 rule 2; an output.weight there is ignored).
        if spec.untied_head and "output.weight" in g.tensors:
            self.head_source = "output.weight"
            self.lm_weight = self._tensor("output.weight", self.n_vocab, d)
        else:
            self.head_source = "token_embd.weight"
            self.lm_weight = self.tok_embd
        self.output_tied = self.head_source == "token_embd.weight"
        self.lm_weight_t = np.ascontiguousarray(self.lm_weight.T)
        self.output_norm = self._tensor("output_norm.weight", d)
        shapes = {"attn_q": (H * D, d), "attn_k": (Hkv * D, d), "attn_v": (Hkv * D, d),
                  "attn_output": (d, H * D), "ffn_gate": (F, d), "ffn_up": (F, d),
                  "ffn_down": (d, F)}
        self.layers = []
        for L in range(self.n_layer):
            p = f"blk.{L}."
            layer = Layer(attn_norm=self._tensor(p + "attn_norm.weight", d),
                          ffn_norm=self._tensor(p + "ffn_norm.weight", d))
            if spec.sub_norms:
                layer.attn_sub_norm = self._tensor(p + "attn_sub_norm.weight", H * D)
                layer.ffn_sub_norm = self._tensor(p + "ffn_sub_norm.weight", F)
            for name in LINEARS:
                M, K = shapes[name]
                tname = p + name + ".weight"
                if tname not in g.tensors:
                    raise GGUFError(f"missing tensor {tname}")
                if g.tensors[tname].ne[:2] != (K, M) or any(e != 1 for e in g.tensors[tname].ne[2:]):
                    raise GGUFError(f"{tname}: dims {list(g.tensors[tname].ne)}, expected [{K}, {M}]")
                w = g.ternary(tname)
                sname = p + name + ".scale"
                if spec.scale_tensors and sname in g.tensors:
                    sv = g.dequantize(sname).reshape(-1)
                    if sv.size != 1:
                        raise GGUFError(f"{sname}: expected a scalar")
                    w.scale = F32(sv[0])
                layer.lin[name] = w
                bname = p + name + ".bias"
                if spec.attn_biases and name in ATTN_LINEARS and bname in g.tensors:
                    layer.bias[name] = self._tensor(bname, M)
            self.layers.append(layer)
        self.weight_kind = self.layers[0].lin["attn_q"].kind if self.layers else None
        self.has_biases = any(layer.bias for layer in self.layers)
        tt = g.get("tokenizer.ggml.token_type")
        self.token_type = None if tt is None else np.asarray(tt)

    def _tensor(self, name, *dims):
        """A float tensor, dequantized to float32 in numpy shape, after checking its dims (numpy
        order; None = any)."""
        g = self.gguf
        if name not in g.tensors:
            raise GGUFError(f"missing tensor {name}")
        ne = list(g.tensors[name].ne)
        while len(ne) > len(dims) and ne[-1] == 1:
            ne.pop()
        want = list(reversed(dims))
        if len(ne) != len(want) or any(w is not None and w != e for w, e in zip(want, ne)):
            shown = ["*" if w is None else w for w in want]
            raise GGUFError(f"{name}: dims {list(g.tensors[name].ne)}, expected {shown}")
        return g.dequantize(name).reshape(dims if None not in dims else (-1,) + dims[1:])

    def _check_inventory(self):
        names = list(self.gguf.tensors)
        if self.graph == "llama":
            extra = [n for n in names if not _LLAMA_TENSOR.fullmatch(n)]
            if extra:
                raise GGUFError(f"tensor {extra[0]} is not part of the llama graph "
                                f"({len(extra)} such tensors; llama.cpp refuses the file too)")
        else:
            bias = [n for n in names if n.endswith(".bias")]
            if bias:
                raise GGUFError(f"tensor {bias[0]}: biases are not implemented for graph {self.graph}")

    def rope(self, x, positions, n_heads):
        """The graph's RoPE on x float32 [n, n_heads·head_dim]."""
        return ROPE_FUNCS[self.spec.rope](x, positions, n_heads, self.head_dim, self.n_rot,
                                          self.rope_base)

    def new_cache(self, n_ctx=None):
        return KVCache(self.n_layer, n_ctx or self.n_ctx, self.n_head_kv * self.head_dim)

    @staticmethod
    def linear(layer: Layer, name: str, x, put=None, prefix=""):
        """BitLinear `name` of `layer` on x, plus its bias (float32 add) when the layer has one.
        Stage names, as `bitnetd logits --dump-stages` writes them: <prefix><name>.dot (I2_S
        integer dots Σ T·q) and <prefix><name> (the BitLinear output *before* the bias; the bias
        shows in the stages that read it: q_rope, k_rope, attn, ffn_in)."""
        dot, y = layer.lin[name].forward(x)
        if put is not None:
            if dot is not None:
                put(prefix + name + ".dot", dot.astype(np.int32))
            put(prefix + name, y)
        return BitNetModel.add_bias(layer, name, y)

    @staticmethod
    def add_bias(layer: Layer, name: str, y):
        """y + the bias of projection `name` (float32), or y when it has none."""
        b = layer.bias.get(name)
        return y if b is None else y + b

    def forward(self, ids, cache: KVCache, dump: dict | None = None) -> np.ndarray:
        """Processes `ids` as one batch at positions cache.n.. ; returns logits float32 [n, V].
        If `dump` is a dict, the stage tensors of this batch are stored in it (engine names;
        the sub-norm stages exist only in graphs with sub-norms; projections before their bias)."""
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
            q = self.linear(layer, "attn_q", a, put, P)
            k = self.linear(layer, "attn_k", a, put, P)
            v = self.linear(layer, "attn_v", a, put, P)
            qr = self.rope(q, pos, H)
            kr = self.rope(k, pos, Hkv)
            put(P + "q_rope", qr)
            put(P + "k_rope", kr)
            cache.k[L][start:start + n] = kr.astype(F16)
            cache.v[L][start:start + n] = v.astype(F16)
            o = attention(qr, cache.k[L][:start + n], cache.v[L][:start + n], pos, H, Hkv, D,
                          single_token=(n == 1))
            put(P + "attn", o)
            if layer.attn_sub_norm is not None:
                o = rmsnorm(o, layer.attn_sub_norm, self.eps)
                put(P + "attn_sub_norm", o)
            o = self.linear(layer, "attn_output", o, put, P)
            h = h + o
            put(P + "ffn_in", h)
            f = rmsnorm(h, layer.ffn_norm, self.eps)
            put(P + "ffn_norm", f)
            gate = self.linear(layer, "ffn_gate", f, put, P)
            up = self.linear(layer, "ffn_up", f, put, P)
            z = ffn_act(gate, up, self.act)
            put(P + "ffn_act", z)
            if layer.ffn_sub_norm is not None:
                z = rmsnorm(z, layer.ffn_sub_norm, self.eps)
                put(P + "ffn_sub_norm", z)
            z = self.linear(layer, "ffn_down", z, put, P)
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

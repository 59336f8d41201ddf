#!/usr/bin/env python3
"""Independent NumPy reference implementation of BitNet b1.58 inference.

Written from /work/shared/spec/bitnet-gguf.md and /work/shared/spec/model-families.md only (no code
shared with the Swift engine):
  * GGUF v2/v3 reader (spec §1) — ref_gguf.py; tensor decoders F32/F16/BF16/Q8_0/TQ1_0/TQ2_0/I2_S
    (§3.2, §3.5) — ref_quant.py (F32/F16/BF16 in ref_gguf.GGUFFile.dequantize);
  * per-token int8 activation quantization and BitLinear (§3.3, §4.5) — ref_quant.py;
  * three forward graphs — ref_model.py: `bitnet-b1.58` (spec §4: ReLU², sub-norms, NEOX RoPE),
    `bitnet` (model-families §3.2: activation from `<arch>.hidden_activation`, SiLU when absent,
    sub-norms, NEOX RoPE, optional per-tensor scale tensors) and `llama` (model-families §2.2:
    SwiGLU, no sub-norms, NORM RoPE, optional attention biases, `output.weight` head when present);
    the graph is picked from the file like model-families §10 rule 1, or named with --graph;
  * the storage precision of §4.7 (F16 KV cache, F16 q, F16 probabilities on 1-token steps,
    F16-rounded final vector before the F16 LM head) — ref_numerics.py, ref_model.py.

Float details the spec leaves open are fixed in ref_numerics.py (RMSNorm, libm cos/sin/exp/powf,
float dot-product order) and ref_quant.py (BitLinear), documented in each module and function.

This file is the command-line entry point and re-exports every name of the modules above
(`import bitnet_ref as R; R.BitNetModel(...)`).

CLI (every subcommand takes --graph auto|bitnet-b1.58|bitnet|llama, default auto):
  bitnet_ref.py logits MODEL --token-ids 1,2,3 [--prompt-len P] --out F
  bitnet_ref.py greedy MODEL --token-ids 1,2,3 --n 32
  bitnet_ref.py stages MODEL [--token-ids 1,2,3] --dump DIR
  bitnet_ref.py graph MODEL          # {"name": …, "reason": …, "head": …} as one JSON line
"""

from __future__ import annotations

import argparse
import json
import sys

from ref_gguf import (GGUF_MAGIC, T_ARRAY, T_BOOL, T_FLOAT32, T_FLOAT64, T_INT8, T_INT16,
                      T_INT32, T_INT64, T_STRING, T_UINT8, T_UINT16, T_UINT32, T_UINT64, _SCALAR_FMT,
                      _SCALAR_NP, GGUFFile, TensorInfo, _Cursor)
from ref_model import (ATTN_LINEARS, B158_ARCHS, BITNET_ARCHS, FORK_FILE_TYPES, GRAPH_TABLE, GRAPHS,
                       LINEARS, BitNetModel, Graph, KVCache, Layer, read_stages, select_graph,
                       write_stages)
from ref_numerics import (_LIBM, _TRIG_CACHE, ROPE_FUNCS, _cos_sin_f32, _load_libm, attention,
                          dot_lanes8, dot_seq, expf, ffn_act, lm_head, rmsnorm, rope_neox, rope_norm,
                          rope_theta_scale)
from ref_quant import (F16, F32, _BLOCK, _POW3, GGML_BF16, GGML_F16, GGML_F32, GGML_I2_S, GGML_Q6_K,
                       GGML_Q8_0, GGML_TQ1_0, GGML_TQ2_0, QK_I2_S, QK_K, TYPE_NAMES, GGUFError, TernaryWeight,
                       bitlinear, decode_i2_s, decode_tq1_0, decode_tq2_0, dequantize_q6_k,
                       dequantize_q8_0, encode_i2_s, encode_tq1_0, encode_tq2_0, quantize_act,
                       tensor_nbytes, tq1_byte, tq1_trits)

# The names of the single-file reference this facade replaces (tests and tools use `R.<name>`).
__all__ = [
    "F32", "F16",
    # ref_gguf
    "GGUF_MAGIC", "T_UINT8", "T_INT8", "T_UINT16", "T_INT16", "T_UINT32", "T_INT32",
    "T_FLOAT32", "T_BOOL", "T_STRING", "T_ARRAY", "T_UINT64", "T_INT64", "T_FLOAT64", "_SCALAR_FMT",
    "_SCALAR_NP", "TensorInfo", "_Cursor", "GGUFFile",
    # ref_quant
    "GGML_F32", "GGML_F16", "GGML_Q8_0", "GGML_BF16", "GGML_Q6_K", "GGML_TQ1_0", "GGML_TQ2_0",
    "GGML_I2_S", "TYPE_NAMES", "_BLOCK", "QK_I2_S", "QK_K", "GGUFError", "tensor_nbytes",
    "dequantize_q8_0", "dequantize_q6_k", "decode_i2_s", "encode_i2_s", "decode_tq2_0",
    "encode_tq2_0", "_POW3", "tq1_trits", "tq1_byte", "decode_tq1_0", "encode_tq1_0",
    "quantize_act", "TernaryWeight", "bitlinear",
    # ref_numerics
    "rmsnorm", "_load_libm", "_LIBM", "_TRIG_CACHE", "_cos_sin_f32", "expf", "dot_seq", "dot_lanes8",
    "rope_theta_scale", "rope_neox", "rope_norm", "ROPE_FUNCS", "attention", "ffn_act", "lm_head",
    # ref_model
    "LINEARS", "ATTN_LINEARS", "B158_ARCHS", "BITNET_ARCHS", "FORK_FILE_TYPES", "Graph", "GRAPH_TABLE", "GRAPHS", "select_graph",
    "Layer", "KVCache", "BitNetModel", "write_stages", "read_stages",
    # CLI
    "main",
]


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------

def _parse_ids(s: str):
    return [int(t) for t in s.replace(" ", "").split(",") if t != ""]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    graph = argparse.ArgumentParser(add_help=False)
    graph.add_argument("--graph", choices=("auto",) + GRAPHS, default="auto",
                       help="forward graph (default: chosen from the file, model-families §10)")
    p = sub.add_parser("logits", parents=[graph])
    p.add_argument("model")
    p.add_argument("--token-ids", required=True)
    p.add_argument("--prompt-len", type=int)
    p.add_argument("--out", required=True)
    p = sub.add_parser("greedy", parents=[graph])
    p.add_argument("model")
    p.add_argument("--token-ids", required=True)
    p.add_argument("--n", type=int, default=32)
    p = sub.add_parser("stages", parents=[graph])
    p.add_argument("model")
    p.add_argument("--token-ids", default=None, help="default: 1..8")
    p.add_argument("--dump", required=True)
    p = sub.add_parser("graph", parents=[graph])
    p.add_argument("model")
    a = ap.parse_args(argv)

    model = BitNetModel(a.model, graph=a.graph)
    if a.cmd == "graph":
        print(json.dumps({"name": model.graph, "reason": model.graph_reason,
                          "head": model.head_source, "activation": model.act,
                          "rope": model.spec.rope}))
    elif a.cmd == "logits":
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

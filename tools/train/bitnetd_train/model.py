"""BitNet b1.58 (2B4T architecture, spec §4.1) in PyTorch with quantization-aware training.

BitLinear: per-token int8 absmax activations (s = 127 / max|x|, round half-even, clamp [-128, 127])
and per-tensor absmean ternary weights (α = mean|W|, T = clamp(round(W/α), -1, 1)), both with
straight-through estimators. With `emulate_f16` the F16 storage that bitnetd uses outside BitLinear
(F16 token embedding / LM head, F16 KV cache, F16 q for K·q, F16 final normed vector) is emulated
too, with straight-through gradients, so training, evaluation and the exported file agree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, asdict

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class Config:
    vocab: int = 1024
    d: int = 256
    layers: int = 5
    heads: int = 8
    kv_heads: int = 4
    ff: int = 768
    context: int = 512
    rope_theta: float = 500000.0
    eps: float = 1e-5

    @property
    def head_dim(self):
        return self.d // self.heads

    def to_dict(self):
        return asdict(self)


def ste(x, q):
    return x + (q - x).detach()


def f16(x):
    return ste(x, x.half().float())


def quant_act(x):
    s = 127.0 / x.abs().amax(dim=-1, keepdim=True).clamp(min=1e-5)
    q = torch.clamp(torch.round(x * s), -128, 127) / s
    return ste(x, q)


def ternary(w):
    alpha = w.abs().mean().clamp(min=1e-5)
    t = torch.clamp(torch.round(w / alpha), -1, 1)
    return t, alpha


class BitLinear(nn.Module):
    def __init__(self, k, m):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(m, k) / math.sqrt(k))

    def forward(self, x):
        t, alpha = ternary(self.weight)
        w = ste(self.weight, t * alpha)
        return F.linear(quant_act(x), w)


class RMSNorm(nn.Module):
    def __init__(self, n, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n))
        self.eps = eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rope_tables(cfg, n, device=None):
    D = cfg.head_dim
    inv = 1.0 / (cfg.rope_theta ** (torch.arange(0, D, 2, dtype=torch.float64) / D))
    ang = torch.arange(n, dtype=torch.float64)[:, None] * inv[None, :]
    return torch.cos(ang).float(), torch.sin(ang).float()


def rope(x, cos, sin):
    # x [B, H, T, D]; NEOX rotate-half: pairs (i, i + D/2)
    h = x.shape[-1] // 2
    x1, x2 = x[..., :h], x[..., h:]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


class Block(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d, kv = cfg.d, cfg.kv_heads * cfg.head_dim
        self.cfg = cfg
        self.attn_norm = RMSNorm(d, cfg.eps)
        self.attn_q = BitLinear(d, d)
        self.attn_k = BitLinear(d, kv)
        self.attn_v = BitLinear(d, kv)
        self.attn_sub_norm = RMSNorm(d, cfg.eps)
        self.attn_output = BitLinear(d, d)
        self.ffn_norm = RMSNorm(d, cfg.eps)
        self.ffn_gate = BitLinear(d, cfg.ff)
        self.ffn_up = BitLinear(d, cfg.ff)
        self.ffn_sub_norm = RMSNorm(cfg.ff, cfg.eps)
        self.ffn_down = BitLinear(cfg.ff, d)

    def forward(self, h, cos, sin, mask, emulate_f16):
        cfg = self.cfg
        B, T, _ = h.shape
        H, Hk, D = cfg.heads, cfg.kv_heads, cfg.head_dim
        a = self.attn_norm(h)
        q = self.attn_q(a).view(B, T, H, D).transpose(1, 2)
        k = self.attn_k(a).view(B, T, Hk, D).transpose(1, 2)
        v = self.attn_v(a).view(B, T, Hk, D).transpose(1, 2)
        q, k = rope(q, cos, sin), rope(k, cos, sin)
        if emulate_f16:
            q, k, v = f16(q), f16(k), f16(v)
        rep = H // Hk
        k = k.repeat_interleave(rep, dim=1)
        v = v.repeat_interleave(rep, dim=1)
        att = (q @ k.transpose(-1, -2)) / math.sqrt(D) + mask
        o = torch.softmax(att, dim=-1) @ v
        o = o.transpose(1, 2).reshape(B, T, H * D)
        h = h + self.attn_output(self.attn_sub_norm(o))
        f = self.ffn_norm(h)
        z = F.relu(self.ffn_gate(f)).square() * self.ffn_up(f)
        return h + self.ffn_down(self.ffn_sub_norm(z))


class BitNet(nn.Module):
    def __init__(self, cfg: Config):
        super().__init__()
        self.cfg = cfg
        self.token_embd = nn.Parameter(torch.randn(cfg.vocab, cfg.d) * 0.5)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.layers))
        self.output_norm = RMSNorm(cfg.d, cfg.eps)
        cos, sin = rope_tables(cfg, cfg.context)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)

    def forward(self, ids, need=None, emulate_f16=True):
        """Logits [B, T, V], or [N, V] for the positions where the bool mask `need` [B, T] is set."""
        B, T = ids.shape
        emb = f16(self.token_embd) if emulate_f16 else self.token_embd
        h = emb[ids]
        mask = torch.full((T, T), float("-inf"), device=ids.device).triu(1)
        cos, sin = self.cos[:T], self.sin[:T]
        for b in self.blocks:
            h = b(h, cos, sin, mask, emulate_f16)
        if need is not None:
            h = h[need]
        y = self.output_norm(h)
        if emulate_f16:
            y = f16(y)
        return y @ emb.t()

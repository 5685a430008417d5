"""An encoder-decoder Transformer for translation, written for tzip.

Parameter names follow Hugging Face's MarianMT (``model.`` prefix dropped), so an opus-mt checkpoint
maps onto this model by renaming alone, and ours exports back the same way:

    shared.weight                                   tied source/target/output embedding
    encoder.layers.{i}.self_attn.{q,k,v,out}_proj   decoder.layers.{i}.encoder_attn.{q,k,v,out}_proj
    encoder.layers.{i}.self_attn_layer_norm         decoder.layers.{i}.encoder_attn_layer_norm
    encoder.layers.{i}.fc1 / fc2 / final_layer_norm
    encoder.layer_norm / decoder.layer_norm         only with pre-norm (normalize_before=True)
    final_logits_bias                               (1, vocab)

Shapes: B batch, S source length, T target length, D d_model, H heads, Dh head dim, V vocab.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from compression.runtime.model_config import ModelConfig

__all__ = ["ModelConfig", "Transformer", "sinusoidal_positions"]

ACTIVATIONS = {"relu": F.relu, "gelu": F.gelu, "swish": F.silu, "silu": F.silu}


def sinusoidal_positions(n_pos: int, dim: int) -> torch.Tensor:
    """Marian's layout: sin of every frequency in the first half, cos in the second (not interleaved)."""
    pos = torch.arange(n_pos, dtype=torch.float64)[:, None]
    j = torch.arange(dim, dtype=torch.float64)[None, :]
    angle = pos / torch.pow(10000.0, 2 * torch.div(j, 2, rounding_mode="floor") / dim)  # (n_pos, dim)
    half = (dim + 1) // 2
    out = torch.empty(n_pos, dim, dtype=torch.float64)
    out[:, :half] = torch.sin(angle[:, 0::2])
    out[:, half:] = torch.cos(angle[:, 1::2])
    return out.float()


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        d = cfg.d_model
        self.n_heads = cfg.n_heads
        self.head_dim = d // cfg.n_heads
        self.q_proj = nn.Linear(d, d)
        self.k_proj = nn.Linear(d, d)
        self.v_proj = nn.Linear(d, d)
        self.out_proj = nn.Linear(d, d)
        self.dropout = cfg.attention_dropout
        self.keep_weights = False  # set True to record attention maps (analysis only)
        self.last_weights: torch.Tensor | None = None

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape
        return x.view(B, T, self.n_heads, self.head_dim).transpose(1, 2)  # (B, H, T, Dh)

    def project_kv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.split_heads(self.k_proj(x)), self.split_heads(self.v_proj(x))

    def forward(self, x: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x (B, Tq, D); k, v (B, H, Tk, Dh); mask broadcastable to (B, H, Tq, Tk), True = may attend."""
        q = self.split_heads(self.q_proj(x)) * self.head_dim**-0.5  # (B, H, Tq, Dh)
        scores = q @ k.transpose(-1, -2)  # (B, H, Tq, Tk)
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
        weights = scores.softmax(dim=-1)
        if self.keep_weights:
            self.last_weights = weights.detach()
        weights = F.dropout(weights, self.dropout, self.training)
        out = (weights @ v).transpose(1, 2).reshape(x.shape)  # (B, Tq, D)
        return self.out_proj(out)


class EncoderLayer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.self_attn = Attention(cfg)
        self.self_attn_layer_norm = nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps)
        self.fc1 = nn.Linear(cfg.d_model, cfg.ffn_dim)
        self.fc2 = nn.Linear(cfg.ffn_dim, cfg.d_model)
        self.final_layer_norm = nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps)

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = _sublayer(self, h, self.self_attn_layer_norm, lambda x: self.self_attn(x, *self.self_attn.project_kv(x), mask))
        return _sublayer(self, h, self.final_layer_norm, lambda x: _ffn(self, x))


class DecoderLayer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.self_attn = Attention(cfg)
        self.self_attn_layer_norm = nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps)
        self.encoder_attn = Attention(cfg)
        self.encoder_attn_layer_norm = nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps)
        self.fc1 = nn.Linear(cfg.d_model, cfg.ffn_dim)
        self.fc2 = nn.Linear(cfg.ffn_dim, cfg.d_model)
        self.final_layer_norm = nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps)

    def forward(
        self,
        h: torch.Tensor,  # (B, T, D) new positions only
        self_mask: torch.Tensor,  # (B|1, 1, T, P+T)
        past: tuple[torch.Tensor, torch.Tensor] | None,  # (B, H, P, Dh) each
        cross_kv: tuple[torch.Tensor, torch.Tensor],  # (B, H, S, Dh) each
        src_mask: torch.Tensor,  # (B, 1, 1, S)
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        present: list[tuple[torch.Tensor, torch.Tensor]] = []

        def self_attention(x: torch.Tensor) -> torch.Tensor:
            k, v = self.self_attn.project_kv(x)
            if past is not None:
                k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
            present.append((k, v))
            return self.self_attn(x, k, v, self_mask)

        h = _sublayer(self, h, self.self_attn_layer_norm, self_attention)
        h = _sublayer(self, h, self.encoder_attn_layer_norm, lambda x: self.encoder_attn(x, *cross_kv, src_mask))
        h = _sublayer(self, h, self.final_layer_norm, lambda x: _ffn(self, x))
        return h, present[0]


def _ffn(layer: EncoderLayer | DecoderLayer, x: torch.Tensor) -> torch.Tensor:
    cfg = layer.cfg
    x = ACTIVATIONS[cfg.activation](layer.fc1(x))
    x = F.dropout(x, cfg.activation_dropout, layer.training)
    return layer.fc2(x)


def _sublayer(layer: nn.Module, h: torch.Tensor, norm: nn.LayerNorm, fn) -> torch.Tensor:
    """Residual block, pre-norm or post-norm."""
    cfg = layer.cfg
    if cfg.normalize_before:
        return h + F.dropout(fn(norm(h)), cfg.dropout, layer.training)
    return norm(h + F.dropout(fn(h), cfg.dropout, layer.training))


class Stack(nn.Module):
    def __init__(self, cfg: ModelConfig, layer_cls: type, n: int):
        super().__init__()
        self.layers = nn.ModuleList(layer_cls(cfg) for _ in range(n))
        self.layer_norm = nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps) if cfg.normalize_before else None


class Transformer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.shared = nn.Embedding(cfg.vocab_size, cfg.d_model, padding_idx=cfg.pad_id)
        self.encoder = Stack(cfg, EncoderLayer, cfg.encoder_layers)
        self.decoder = Stack(cfg, DecoderLayer, cfg.decoder_layers)
        self.final_logits_bias = nn.Parameter(torch.zeros(1, cfg.vocab_size))
        self.register_buffer("positions", sinusoidal_positions(cfg.max_positions, cfg.d_model), persistent=False)
        self.embed_scale = math.sqrt(cfg.d_model) if cfg.scale_embedding else 1.0
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for name, p in self.named_parameters():
            if p.dim() == 2 and name != "final_logits_bias":
                nn.init.xavier_uniform_(p)
            elif name.endswith("bias"):
                nn.init.zeros_(p)
        nn.init.normal_(self.shared.weight, std=self.cfg.d_model**-0.5)
        with torch.no_grad():
            self.shared.weight[self.cfg.pad_id].zero_()

    # -- pieces ---------------------------------------------------------------------------------
    def embed(self, ids: torch.Tensor, start: int | torch.Tensor = 0) -> torch.Tensor:
        T = ids.shape[1]
        pos = self.positions[start : start + T] if isinstance(start, int) else self.positions.narrow(0, start, T)
        h = self.shared(ids) * self.embed_scale + pos  # (B, T, D)
        return F.dropout(h, self.cfg.dropout, self.training)

    def encode(self, src: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """src (B, S) -> memory (B, S, D), src_mask (B, 1, 1, S) True at real tokens."""
        if src.shape[1] > self.cfg.max_positions:
            raise ValueError(f"source of {src.shape[1]} tokens exceeds max_positions={self.cfg.max_positions}")
        src_mask = (src != self.cfg.pad_id)[:, None, None, :]
        h = self.embed(src)
        for layer in self.encoder.layers:
            h = layer(h, src_mask)
        if self.encoder.layer_norm is not None:
            h = self.encoder.layer_norm(h)
        return h, src_mask

    def cross_kv(self, memory: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Encoder keys/values for every decoder layer, computed once per sentence."""
        return [layer.encoder_attn.project_kv(memory) for layer in self.decoder.layers]

    def decode(
        self,
        tgt: torch.Tensor,  # (B, T) new target tokens
        cross: list[tuple[torch.Tensor, torch.Tensor]],
        src_mask: torch.Tensor,
        past: list[tuple[torch.Tensor, torch.Tensor]] | None = None,
    ) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
        """Returns logits (B, T, V) and the self-attention cache including the new positions."""
        P = 0 if past is None else past[0][0].shape[2]
        T = tgt.shape[1]
        if P + T > self.cfg.max_positions:
            raise ValueError(f"target of {P + T} tokens exceeds max_positions={self.cfg.max_positions}")
        # query i (absolute position P+i) may see keys 0..P+i
        self_mask = torch.ones(T, P + T, dtype=torch.bool, device=tgt.device).tril(P)[None, None]
        h = self.embed(tgt, P)
        present = []
        for i, layer in enumerate(self.decoder.layers):
            h, kv = layer(h, self_mask, None if past is None else past[i], cross[i], src_mask)
            present.append(kv)
        if self.decoder.layer_norm is not None:
            h = self.decoder.layer_norm(h)
        return self.logits(h), present

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        return F.linear(h, self.shared.weight) + self.final_logits_bias  # (B, T, V)

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: src (B, S), tgt_in (B, T) starting with decoder_start_id -> logits (B, T, V)."""
        memory, src_mask = self.encode(src)
        logits, _ = self.decode(tgt_in, self.cross_kv(memory), src_mask)
        return logits

    def set_keep_attention(self, keep: bool) -> None:
        for m in self.modules():
            if isinstance(m, Attention):
                m.keep_weights = keep
                m.last_weights = None

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

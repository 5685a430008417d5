"""The Transformer's shape and special tokens: what every backend and artifact agrees on (no torch).

Saved as ``config.json`` (``{"model": ...}``) beside a checkpoint and as ``model`` in a variant's
``variant.json``; the PyTorch model (``compression.train.model``) and the ONNX graph builders
(``compression.runtime.graphs``) are both built from it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

ACTIVATION_NAMES = ("relu", "gelu", "swish", "silu")


@dataclass
class ModelConfig:
    vocab_size: int = 8000
    d_model: int = 256
    n_heads: int = 4
    ffn_dim: int = 1024
    encoder_layers: int = 3
    decoder_layers: int = 3
    dropout: float = 0.1
    attention_dropout: float = 0.0
    activation_dropout: float = 0.0
    activation: str = "relu"
    normalize_before: bool = False  # pre-norm (True) or post-norm as in Marian/the original Transformer
    scale_embedding: bool = True  # multiply token embeddings by sqrt(d_model)
    max_positions: int = 512
    pad_id: int = 0
    eos_id: int = 1
    unk_id: int = 2
    decoder_start_id: int = 0  # Marian starts decoding from the pad token
    layer_norm_eps: float = 1e-5

    def __post_init__(self) -> None:
        problems = []
        if self.activation not in ACTIVATION_NAMES:
            problems.append(f"activation {self.activation!r} is not one of {sorted(ACTIVATION_NAMES)}")
        if self.d_model % self.n_heads:
            problems.append(f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}")
        for name in ("vocab_size", "d_model", "n_heads", "ffn_dim", "encoder_layers", "decoder_layers"):
            if getattr(self, name) <= 0:
                problems.append(f"{name} must be positive")
        for name in ("pad_id", "eos_id", "unk_id", "decoder_start_id"):
            if not 0 <= getattr(self, name) < self.vocab_size:
                problems.append(f"{name}={getattr(self, name)} is outside the vocabulary")
        if problems:
            raise ValueError("invalid ModelConfig: " + "; ".join(problems))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown ModelConfig keys {sorted(unknown)}; known: {sorted(known)}")
        return cls(**d)

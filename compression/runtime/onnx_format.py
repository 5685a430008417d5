"""The exported ONNX variant: file names, graph input/output names and the spec saved beside the graphs.

This is the contract between the exporter (``compression.export.writer``, needs torch) and the runtime
(``compression.runtime.translator``, no torch): both import it, neither imports the other. No torch here.

A variant directory holds::

    encoder.onnx    src_ids (B, S) int64, expand () int64
                    -> src_mask (B*expand, 1, 1, S) bool, cross_k_i / cross_v_i (B*expand, H, S, Dh)
    decoder.onnx    one step with a KV cache: tokens (N,) int64, reorder (N,) int64 (row of the cache each
                    row continues; arange(N) when nothing moves), src_mask, cross_k_i, cross_v_i,
                    past_k_i / past_v_i (N, H, P, Dh), P = tokens decoded so far (0 at the first step)
                    -> log_probs (N, V) float32, present_k_i / present_v_i (N, H, P+1, Dh)
    attention.onnx  analysis only (compression/runtime/graphs_attention.py): src_ids (B, S), tgt_ids (B, T) int64
                    -> encoder_self (Le, B, H, S, S), decoder_self (Ld, B, H, T, T), cross (Ld, B, H, T, S)
                    float32, every softmax of a teacher-forced pass; not counted in model_bytes
    weights.bin     the initializers of all graphs (ONNX external data), each tensor stored once
    onnx_config.json  GraphSpec below
    tokenizer.model, manifest.json (sha256 of every file, read by compression.runtime.manifest)
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

ENCODER_FILE = "encoder.onnx"
DECODER_FILE = "decoder.onnx"
WEIGHTS_FILE = "weights.bin"
ATTENTION_FILE = "attention.onnx"
GRAPH_FILES = (ENCODER_FILE, DECODER_FILE, ATTENTION_FILE)
ATTENTION_INPUTS = ("src_ids", "tgt_ids")
ATTENTION_OUTPUTS = ("encoder_self", "decoder_self", "cross")
SPEC_FILE = "onnx_config.json"
TOKENIZER_FILE = "tokenizer.model"
NOT_MODEL_FILES = (TOKENIZER_FILE, ATTENTION_FILE)  # shared with the base / analysis only: not in model_bytes
OPSET = 18  # BitwiseAnd (unpacking of packed codes) needs 18

PRECISIONS = ("fp32", "fp16", "int8")
STORAGES = ("dense", "compact", "stored")
STORED_FILES = ("weights.tzc", "variant.json")  # a stored export's weights: the compressed variant's own files


def cross_names(i: int) -> tuple[str, str]:
    return f"cross_k_{i}", f"cross_v_{i}"


def past_names(i: int) -> tuple[str, str]:
    return f"past_k_{i}", f"past_v_{i}"


def present_names(i: int) -> tuple[str, str]:
    return f"present_k_{i}", f"present_v_{i}"


@dataclass(frozen=True)
class GraphSpec:
    """What the runtime must know about a pair of graphs (the model's shape and special tokens)."""

    decoder_layers: int
    n_heads: int
    head_dim: int
    vocab_size: int
    max_positions: int
    pad_id: int
    eos_id: int
    decoder_start_id: int
    precision: str = "fp32"  # fp32 | fp16 (weights and compute) | int8 (dynamic quantization of MatMuls)
    # dense | compact (codes + codebooks / sparse indices decoded inside the graph) | stored (no graph files: the
    # variant's weights.tzc and variant.json, from which compression.runtime.memory builds the graphs at load)
    storage: str = "dense"

    def __post_init__(self) -> None:
        problems = []
        for name in ("decoder_layers", "n_heads", "head_dim", "vocab_size", "max_positions"):
            if getattr(self, name) <= 0:
                problems.append(f"{name} must be positive")
        if self.precision not in PRECISIONS:
            problems.append(f"precision {self.precision!r} is not one of {PRECISIONS}")
        if self.storage not in STORAGES:
            problems.append(f"storage {self.storage!r} is not one of {STORAGES}")
        if problems:
            raise ValueError(f"invalid {SPEC_FILE}: " + "; ".join(problems) + "; re-export the variant")

    @property
    def float_dtype(self) -> str:
        """numpy dtype of the cache tensors."""
        return "float16" if self.precision == "fp16" else "float32"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GraphSpec:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown {SPEC_FILE} keys {sorted(unknown)}; re-export with this version of tzip")
        return cls(**d)

    def save(self, directory: Path) -> None:
        (directory / SPEC_FILE).write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, directory: Path) -> GraphSpec:
        path = directory / SPEC_FILE
        if not path.exists():
            raise FileNotFoundError(f"{path} not found: not an exported variant; run `python -m compression export`")
        return cls.from_dict(json.loads(path.read_text()))

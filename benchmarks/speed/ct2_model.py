"""Our weights as a CTranslate2 model, built through its Python model-spec API (no Marian/HF detour).

The model is post-norm, ReLU, sinusoidal positions (Marian's sin-half/cos-half layout, given to CT2 as
an explicit table), sqrt(d) embedding scale, tied embeddings and a final logits bias. Decoding starts
from <pad> (id 0) as in Marian; the source already ends with </s> (our tokenizer appends it).
"""

from __future__ import annotations

import math
from pathlib import Path

import ctranslate2
import numpy as np
from ctranslate2.specs import common_spec, transformer_spec


def _linear(spec, w: np.ndarray, b: np.ndarray | None = None) -> None:
    spec.weight = np.ascontiguousarray(w, dtype=np.float32)
    if b is not None:
        spec.bias = np.ascontiguousarray(b, dtype=np.float32)


def _norm(spec, state: dict, prefix: str) -> None:
    spec.gamma, spec.beta = state[f"{prefix}.weight"], state[f"{prefix}.bias"]


def _attention(spec, state: dict, prefix: str, self_attention: bool) -> None:
    q, k, v = (state[f"{prefix}.{p}_proj.weight"] for p in "qkv")
    qb, kb, vb = (state[f"{prefix}.{p}_proj.bias"] for p in "qkv")
    if self_attention:  # CT2 fuses q, k, v into one projection
        _linear(spec.linear[0], np.concatenate([q, k, v]), np.concatenate([qb, kb, vb]))
    else:  # cross attention: q from the decoder, fused k/v from the encoder output
        _linear(spec.linear[0], q, qb)
        _linear(spec.linear[1], np.concatenate([k, v]), np.concatenate([kb, vb]))
    _linear(spec.linear[-1], state[f"{prefix}.out_proj.weight"], state[f"{prefix}.out_proj.bias"])


def build_spec(cfg, state: dict[str, np.ndarray], positions: np.ndarray, vocab: list[str]):
    if cfg.activation != "relu" or cfg.normalize_before:
        raise ValueError("this converter covers post-norm ReLU models (the shipped one); extend build_spec for others")
    spec = transformer_spec.TransformerSpec.from_config(
        (cfg.encoder_layers, cfg.decoder_layers), cfg.n_heads, pre_norm=False, activation=common_spec.Activation.RELU)
    scale = math.sqrt(cfg.d_model) if cfg.scale_embedding else 1.0
    for side in (spec.encoder, spec.decoder):
        side.scale_embeddings = scale
        side.position_encodings.encodings = positions.astype(np.float32)
    spec.encoder.embeddings[0].weight = state["shared.weight"]
    spec.decoder.embeddings.weight = state["shared.weight"]
    for i, layer in enumerate(spec.encoder.layer):
        p = f"encoder.layers.{i}"
        _attention(layer.self_attention, state, f"{p}.self_attn", True)
        _norm(layer.self_attention.layer_norm, state, f"{p}.self_attn_layer_norm")
        _linear(layer.ffn.linear_0, state[f"{p}.fc1.weight"], state[f"{p}.fc1.bias"])
        _linear(layer.ffn.linear_1, state[f"{p}.fc2.weight"], state[f"{p}.fc2.bias"])
        _norm(layer.ffn.layer_norm, state, f"{p}.final_layer_norm")
    for i, layer in enumerate(spec.decoder.layer):
        p = f"decoder.layers.{i}"
        _attention(layer.self_attention, state, f"{p}.self_attn", True)
        _norm(layer.self_attention.layer_norm, state, f"{p}.self_attn_layer_norm")
        _attention(layer.attention, state, f"{p}.encoder_attn", False)
        _norm(layer.attention.layer_norm, state, f"{p}.encoder_attn_layer_norm")
        _linear(layer.ffn.linear_0, state[f"{p}.fc1.weight"], state[f"{p}.fc1.bias"])
        _linear(layer.ffn.linear_1, state[f"{p}.fc2.weight"], state[f"{p}.fc2.bias"])
        _norm(layer.ffn.layer_norm, state, f"{p}.final_layer_norm")
    _linear(spec.decoder.projection, state["shared.weight"], state["final_logits_bias"].reshape(-1))
    spec.config.unk_token, spec.config.eos_token = vocab[cfg.unk_id], vocab[cfg.eos_id]
    spec.config.bos_token = spec.config.decoder_start_token = vocab[cfg.decoder_start_id]
    spec.config.layer_norm_epsilon = cfg.layer_norm_eps
    spec.register_source_vocabulary(vocab)
    spec.register_target_vocabulary(vocab)
    return spec


def convert(model, tokenizer, out_dir: Path | str) -> Path:
    """Write a float32 CTranslate2 model of a torch ``Transformer``; quantize at load (compute_type)."""
    state = {k: v.detach().float().cpu().numpy() for k, v in model.state_dict().items() if k != "positions"}
    vocab = [tokenizer.id_to_piece(i) for i in range(tokenizer.vocab_size)]
    spec = build_spec(model.cfg, state, model.positions.cpu().numpy(), vocab)
    spec.validate()
    spec.optimize(quantization=None)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    spec.save(str(out_dir))
    return Path(out_dir)


class Ct2Translator:
    """Token-id interface like our translators: greedy/beam over pieces, per-call max length."""

    def __init__(self, model_dir: Path | str, tokenizer, compute_type: str = "int8", threads: int = 0, device: str = "cpu"):
        self.tokenizer = tokenizer
        self.compute_type = compute_type
        self.translator = ctranslate2.Translator(str(model_dir), device=device, compute_type=compute_type,
                                                 intra_threads=threads, inter_threads=1)
        self.provider = f"ctranslate2:{device}:{compute_type}"

    def translate_ids(self, src_ids: list[list[int]], beam: int, max_len: int) -> list[list[int]]:
        pieces = [[self.tokenizer.id_to_piece(i) for i in s] for s in src_ids]
        res = self.translator.translate_batch(pieces, beam_size=beam, max_decoding_length=max_len,
                                              max_batch_size=0, return_scores=False)
        return [[self.tokenizer.sp.piece_to_id(p) for p in r.hypotheses[0]] for r in res]

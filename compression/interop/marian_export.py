"""One of our models as a Hugging Face MarianMT directory (``export_marian``).

The directory loads in ``transformers.MarianMTModel``/``MarianTokenizer`` and converts with ``ctranslate2``'s
TransformersConverter. CTranslate2's Marian loader drops the LAST vocabulary entry as the pad token, so the
export moves pad to the end: our SentencePiece ids (pad 0, eos 1, unk 2) become Marian's (eos 0, unk 1,
pad V-1); ``vocab.json`` carries the renumbering, so the same text gives the same pieces in every engine.

CTranslate2 starts decoding from a zero embedding, transformers from the pad row. They agree when that row is
zero (CTranslate2's Marian loader assumes it, as in opus-mt models); the export records whether it is
(``tzip_export.json``). tzip's own models tie the output layer to the embeddings, so training moves that row
away from zero.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from compression.interop.marian_import import EXPORT_RECORD, MARIAN_LAYER_NORM_EPS
from compression.runtime.tokenizer import Tokenizer
from compression.train.model import ModelConfig, Transformer

log = logging.getLogger(__name__)


def export_order(cfg: ModelConfig) -> list[int]:
    """Our ids in export order: pad moves to the end (CTranslate2 drops the last entry as pad)."""
    return [i for i in range(cfg.vocab_size) if i != cfg.pad_id] + [cfg.pad_id]


def check_exportable(cfg: ModelConfig) -> list[str]:
    problems = []
    if cfg.normalize_before:
        problems.append("normalize_before=True (pre-norm): MarianMTModel is post-norm only")
    if cfg.layer_norm_eps != MARIAN_LAYER_NORM_EPS:
        problems.append(f"layer_norm_eps={cfg.layer_norm_eps}: MarianMTModel's layer norms use {MARIAN_LAYER_NORM_EPS}")
    return problems


def marian_state(model: Transformer, order: list[int]) -> dict[str, torch.Tensor]:
    """Our weights under MarianMTModel's names, rows of the vocabulary in export order.

    Only model.shared.weight is written, as save_pretrained does; transformers ties the encoder and
    decoder embeddings and lm_head to it, and computes the sinusoidal positions itself."""
    idx = torch.tensor(order)
    out = {}
    for name, t in model.state_dict().items():
        t = t.detach().float().cpu()
        if name == "shared.weight":
            t = t.index_select(0, idx)
        elif name == "final_logits_bias":
            t = t.index_select(1, idx)
        out[name if name == "final_logits_bias" else f"model.{name}"] = t.contiguous()
    return out


def marian_vocab(tok: Tokenizer, order: list[int]) -> tuple[dict[str, int], dict[str, str]]:
    """vocab.json (piece -> export id) and the special pieces' names."""
    pieces = {tok.id_to_piece(old): new for new, old in enumerate(order)}
    if len(pieces) != len(order):
        raise ValueError("two ids share one piece; such a vocabulary cannot be written as vocab.json")
    special = {"pad": tok.id_to_piece(tok.pad_id), "eos": tok.id_to_piece(tok.eos_id), "unk": tok.id_to_piece(tok.unk_id)}
    return pieces, special


def marian_config(cfg: ModelConfig, new_id: dict[int, int]) -> dict[str, Any]:
    return {
        "architectures": ["MarianMTModel"],
        "model_type": "marian",
        "vocab_size": cfg.vocab_size,
        "decoder_vocab_size": cfg.vocab_size,
        "d_model": cfg.d_model,
        "encoder_layers": cfg.encoder_layers,
        "decoder_layers": cfg.decoder_layers,
        "encoder_attention_heads": cfg.n_heads,
        "decoder_attention_heads": cfg.n_heads,
        "encoder_ffn_dim": cfg.ffn_dim,
        "decoder_ffn_dim": cfg.ffn_dim,
        "activation_function": cfg.activation,
        "dropout": cfg.dropout,
        "attention_dropout": cfg.attention_dropout,
        "activation_dropout": cfg.activation_dropout,
        "scale_embedding": cfg.scale_embedding,
        "max_position_embeddings": cfg.max_positions,
        "pad_token_id": new_id[cfg.pad_id],
        "eos_token_id": new_id[cfg.eos_id],
        "decoder_start_token_id": new_id[cfg.decoder_start_id],
        "forced_eos_token_id": None,  # tzip's search does not force EOS at the length limit
        "bos_token_id": None,
        "share_encoder_decoder_embeddings": True,
        "tie_word_embeddings": True,
        "is_encoder_decoder": True,
        "normalize_before": False,
        "normalize_embedding": False,
        "static_position_embeddings": True,
        "add_bias_logits": False,
        "add_final_layer_norm": False,
        "dtype": "float32",
    }


def export_marian(model: Transformer, tok: Tokenizer, out: Path | str, source: dict[str, Any] | None = None) -> dict:
    """Write a MarianMT directory; returns the export record (also written as tzip_export.json)."""
    cfg, out = model.cfg, Path(out)
    problems = check_exportable(cfg)
    if problems:
        raise ValueError("cannot export to MarianMT without changing what the model computes: " + "; ".join(problems))
    if tok.vocab_size != cfg.vocab_size:
        raise ValueError(f"tokenizer has {tok.vocab_size} ids but the model {cfg.vocab_size}; they do not belong together")
    order = export_order(cfg)
    new_id = {old: new for new, old in enumerate(order)}
    pieces, special = marian_vocab(tok, order)
    out.mkdir(parents=True, exist_ok=True)
    save_file(marian_state(model, order), str(out / "model.safetensors"), metadata={"format": "pt"})
    hf = marian_config(cfg, new_id)
    generation = {k: hf[k] for k in ("decoder_start_token_id", "eos_token_id", "pad_token_id", "forced_eos_token_id",
                                     "bos_token_id")} | {"max_length": cfg.max_positions, "num_beams": 1}
    tokenizer_config = {
        "tokenizer_class": "MarianTokenizer",
        "model_max_length": cfg.max_positions,
        "separate_vocabs": False,
        **{f"{name}_token": piece for name, piece in special.items()},
    }
    start_row = model.shared.weight[cfg.decoder_start_id].detach()
    zero_start = bool(torch.count_nonzero(start_row) == 0)
    record = {
        "format": "marian",
        "source": source or {},
        "model": cfg.to_dict(),
        "id_map": "pad moved to the end: export id = tzip id - (tzip id > pad), pad -> vocab_size - 1",
        "ctranslate2_exact": zero_start,
        "ctranslate2_note": None if zero_start else (
            "CTranslate2 starts decoding from a zero embedding; this model's start-token embedding is not zero "
            f"(max |x| = {start_row.abs().max().item():.3g}), so CTranslate2's translations can differ from "
            "transformers' and tzip's"),
    }
    if not zero_start:
        log.warning(record["ctranslate2_note"])
    files = {
        "config.json": hf,
        "generation_config.json": generation,
        "tokenizer_config.json": tokenizer_config,
        "vocab.json": pieces,
        EXPORT_RECORD: record,
    }
    for name, obj in files.items():
        (out / name).write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (out / "source.spm").write_bytes(tok.proto)
    (out / "target.spm").write_bytes(tok.target_proto)
    return record

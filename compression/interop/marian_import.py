"""Hugging Face MarianMT (opus-mt) checkpoints into tzip (``import_marian``); the way out is marian_export.py.

A MarianMT directory (config.json, optional generation_config.json, safetensors or pytorch_model.bin weights,
source.spm, target.spm, vocab.json) becomes our ``Transformer`` and a Marian-vocabulary ``Tokenizer``.
Weights are renamed (``model.`` dropped) and nothing else: every configuration our model does not compute
identically is refused, all problems in one ``UnsupportedMarian`` error, each naming the option.

opus-mt never emits pad (``bad_words_ids=[[pad]]``, and CTranslate2 removes pad from the vocabulary).
Single-token ``bad_words_ids`` are imported into ``final_logits_bias`` as ``SUPPRESSED_LOGIT``, which
removes them from greedy and beam search alike.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from compression.runtime.tokenizer import MarianVocab, Tokenizer
from compression.train.model import ACTIVATIONS, ModelConfig, Transformer, sinusoidal_positions

log = logging.getLogger(__name__)

SUPPRESSED_LOGIT = -1e4  # exp(-1e4) is 0 in every float type, and -1e4 still fits in float16
MARIAN_LAYER_NORM_EPS = 1e-5  # MarianMTModel's nn.LayerNorm default; not configurable there
EXPORT_RECORD = "tzip_export.json"

# BART-era keys that opus-mt config.json files still carry; MarianMTModel ignores them and always
# computes the value on the right. A checkpoint that says otherwise was not made for that code.
LEGACY_OPTIONS = {
    "normalize_before": (False, "pre-norm layers"),
    "encoder_normalize_before": (False, "pre-norm encoder layers"),
    "decoder_normalize_before": (False, "pre-norm decoder layers"),
    "normalize_embedding": (False, "a layer norm on the embeddings (layernorm_embedding)"),
    "add_final_layer_norm": (False, "a layer norm after the last layer"),
    "static_position_embeddings": (True, "learned position embeddings"),
    "add_bias_logits": (False, "a second output bias"),
}
# weight names (after dropping "model.") that our model has no place for, with what they mean
FOREIGN_WEIGHTS = {
    "layernorm_embedding": "normalize_embedding / layernorm_embedding",
    "encoder.layer_norm": "normalize_before / add_final_layer_norm",
    "decoder.layer_norm": "normalize_before / add_final_layer_norm",
}
# transformers' MarianConfig defaults, for keys a config.json leaves out (it loads them the same way)
MARIAN_DEFAULTS: dict[str, Any] = {
    "vocab_size": 58101, "max_position_embeddings": 1024, "encoder_layers": 12, "encoder_ffn_dim": 4096,
    "encoder_attention_heads": 16, "decoder_layers": 12, "decoder_ffn_dim": 4096, "decoder_attention_heads": 16,
    "activation_function": "gelu", "d_model": 1024, "dropout": 0.1, "attention_dropout": 0.0,
    "activation_dropout": 0.0, "scale_embedding": False, "pad_token_id": 58100, "eos_token_id": 0,
    "decoder_start_token_id": 58100, "share_encoder_decoder_embeddings": True,
}
TIED = ("shared.weight", "encoder.embed_tokens.weight", "decoder.embed_tokens.weight", "lm_head.weight")
POSITIONS = ("encoder.embed_positions.weight", "decoder.embed_positions.weight")


class UnsupportedMarian(ValueError):
    """The checkpoint uses something tzip does not compute identically; the message lists every problem."""

    def __init__(self, source: str, problems: list[str]):
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(
            f"{source} cannot be imported without changing what it computes:\n{lines}\n"
            "tzip imports post-norm MarianMT models with tied, shared embeddings and sinusoidal positions "
            "(the opus-mt family); convert anything else with its own toolkit."
        )


@dataclass
class MarianCheckpoint:
    """What a MarianMT directory holds, read but not yet checked."""

    name: str
    config: dict[str, Any]
    generation: dict[str, Any]
    weights: dict[str, torch.Tensor]
    source_spm: bytes
    target_spm: bytes
    vocab: dict[str, int]
    tokenizer_config: dict[str, Any] = field(default_factory=dict)
    has_target_vocab: bool = False


# -- pure checks and mappings ---------------------------------------------------------------------
def check_config(hf: dict[str, Any]) -> list[str]:
    """Everything in a MarianMT config.json that our model cannot compute identically."""
    problems = []
    if hf.get("model_type") != "marian":
        problems.append(f"model_type={hf.get('model_type')!r}: only 'marian' (MarianMTModel) checkpoints are imported")
    arch = hf.get("architectures") or ["MarianMTModel"]
    if "MarianMTModel" not in arch:
        problems.append(f"architectures={arch}: only MarianMTModel (encoder-decoder) is imported")
    act = hf.get("activation_function", "gelu")
    if act not in ACTIVATIONS:
        problems.append(f"activation_function={act!r} is not implemented (supported: {', '.join(sorted(ACTIVATIONS))})")
    for key, (marian, meaning) in LEGACY_OPTIONS.items():
        if key in hf and hf[key] is not None and bool(hf[key]) != marian:
            problems.append(f"{key}={hf[key]!r} asks for {meaning}; tzip implements Marian's {key}={marian}")
    for a, b in (("encoder_attention_heads", "decoder_attention_heads"), ("encoder_ffn_dim", "decoder_ffn_dim")):
        if hf.get(a) != hf.get(b):
            problems.append(f"{a}={hf.get(a)} differs from {b}={hf.get(b)}; tzip uses one value for both stacks")
    if not hf.get("share_encoder_decoder_embeddings", True):
        problems.append("share_encoder_decoder_embeddings=false (separate source and target vocabularies); "
                        "tzip ties one embedding to both sides and the output layer")
    if hf.get("decoder_vocab_size") not in (None, hf.get("vocab_size")):
        problems.append(f"decoder_vocab_size={hf.get('decoder_vocab_size')} differs from vocab_size={hf.get('vocab_size')} "
                        "(separate vocabularies)")
    if not isinstance(hf.get("eos_token_id"), int):
        problems.append(f"eos_token_id={hf.get('eos_token_id')!r}: tzip needs exactly one end-of-sentence id")
    if hf.get("pad_token_id") is None:
        problems.append("pad_token_id is missing: MarianMT pads and starts decoding with it")
    if hf.get("d_model", 0) % max(hf.get("encoder_attention_heads") or 1, 1):
        problems.append(f"d_model={hf.get('d_model')} is not divisible by encoder_attention_heads")
    return problems


def model_config(hf: dict[str, Any], vocab: MarianVocab) -> ModelConfig:
    """config.json of a checked checkpoint -> our ModelConfig (ids are Marian's vocabulary ids)."""
    return ModelConfig(
        vocab_size=hf["vocab_size"],
        d_model=hf["d_model"],
        n_heads=hf["encoder_attention_heads"],
        ffn_dim=hf["encoder_ffn_dim"],
        encoder_layers=hf["encoder_layers"],
        decoder_layers=hf["decoder_layers"],
        dropout=hf.get("dropout", 0.1),
        attention_dropout=hf.get("attention_dropout", 0.0),
        activation_dropout=hf.get("activation_dropout", 0.0),
        activation=hf.get("activation_function", "gelu"),
        normalize_before=False,
        scale_embedding=bool(hf.get("scale_embedding", False)),
        max_positions=hf["max_position_embeddings"],
        pad_id=hf["pad_token_id"],
        eos_id=hf["eos_token_id"],
        unk_id=vocab.unk_id,
        decoder_start_id=hf.get("decoder_start_token_id", hf["pad_token_id"]),
        layer_norm_eps=MARIAN_LAYER_NORM_EPS,
    )


def check_vocab(hf: dict[str, Any], vocab: MarianVocab) -> list[str]:
    problems = []
    if vocab.size > hf.get("vocab_size", 0):
        problems.append(f"vocab.json has ids up to {vocab.size - 1} but vocab_size={hf.get('vocab_size')}")
    for name, key in (("pad", "pad_token_id"), ("eos", "eos_token_id")):
        if isinstance(hf.get(key), int) and getattr(vocab, f"{name}_id") != hf[key]:
            problems.append(f"{key}={hf[key]} but vocab.json maps {vocab.special[name]!r} to {getattr(vocab, f'{name}_id')}")
    return problems


def suppressed_ids(generation: dict[str, Any]) -> tuple[list[int], list[str]]:
    """Single-token bad_words_ids (opus-mt: [[pad]]) -> ids to suppress; longer sequences are refused."""
    bad = generation.get("bad_words_ids") or []
    ids = sorted({seq[0] for seq in bad if len(seq) == 1})
    longer = [seq for seq in bad if len(seq) != 1]
    problems = [f"bad_words_ids has multi-token sequences {longer[:3]}: tzip's search only suppresses single tokens"]
    return ids, problems if longer else []


def state_from_marian(weights: dict[str, torch.Tensor], cfg: ModelConfig, expected: dict[str, torch.Size]
                      ) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Marian weight names/tensors -> our state dict (fp32), and every problem found."""
    hf = {k.removeprefix("model."): v for k, v in weights.items()}
    problems: list[str] = []
    tied = [k for k in TIED if k in hf]
    if not tied:
        return {}, ["no embedding weights (model.shared.weight) in the checkpoint"]
    shared = hf[tied[0]]
    for k in tied[1:]:
        if not torch.equal(hf[k], shared):
            why = "tie_word_embeddings=false" if k == "lm_head.weight" else "share_encoder_decoder_embeddings=false"
            problems.append(f"{k} differs from {tied[0]} ({why}): tzip ties the embeddings and the output layer")
    for k in POSITIONS:
        if k in hf:
            want = sinusoidal_positions(cfg.max_positions, cfg.d_model)
            if hf[k].shape != want.shape or not torch.allclose(hf[k].float(), want, atol=1e-4):
                problems.append(f"{k} is not Marian's sinusoid (learned positions, static_position_embeddings=false)")
    state = {"shared.weight": shared}
    state["final_logits_bias"] = hf.get("final_logits_bias", torch.zeros(1, cfg.vocab_size))
    rest = {k: v for k, v in hf.items() if k not in TIED + POSITIONS + ("final_logits_bias",)}
    for k in sorted(rest):
        if k not in expected:
            meaning = next((m for prefix, m in FOREIGN_WEIGHTS.items() if prefix in k), "not part of MarianMTModel")
            problems.append(f"unexpected weight {k} ({meaning})")
        else:
            state[k] = rest[k]
    missing = sorted(set(expected) - set(state))
    if missing:
        problems.append(f"missing weights {missing[:5]}{' …' if len(missing) > 5 else ''}")
    for k, v in state.items():
        if k in expected and v.shape != expected[k]:
            problems.append(f"{k} has shape {tuple(v.shape)}, config.json implies {tuple(expected[k])}")
    return {k: v.float() for k, v in state.items()}, problems


# -- reading a MarianMT directory ----------------------------------------------------------------
def read_weights(directory: Path) -> dict[str, torch.Tensor]:
    def from_index(index: Path, load) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        for shard in sorted(set(json.loads(index.read_text())["weight_map"].values())):
            out.update(load(directory / shard))
        return out

    def load_bin(p: Path) -> dict[str, torch.Tensor]:
        return torch.load(p, map_location="cpu", weights_only=True)

    if (directory / "model.safetensors").exists():
        return load_file(str(directory / "model.safetensors"))
    if (directory / "model.safetensors.index.json").exists():
        return from_index(directory / "model.safetensors.index.json", lambda p: load_file(str(p)))
    if (directory / "pytorch_model.bin").exists():
        return load_bin(directory / "pytorch_model.bin")
    if (directory / "pytorch_model.bin.index.json").exists():
        return from_index(directory / "pytorch_model.bin.index.json", load_bin)
    other = [p.name for p in directory.glob("*") if p.suffix in (".h5", ".msgpack")]
    hint = (f" It has {other}: load it with transformers (from_tf/from_flax=True) and save_pretrained() it first."
            if other else "")
    raise FileNotFoundError(f"{directory} has no model.safetensors or pytorch_model.bin (sharded or not).{hint}")


def _token_name(value: Any, default: str) -> str:
    if isinstance(value, dict):  # transformers' serialised AddedToken
        return value.get("content", default)
    return value if isinstance(value, str) else default


def read_checkpoint(directory: Path | str) -> MarianCheckpoint:
    directory = Path(directory)
    if not (directory / "config.json").exists():
        raise FileNotFoundError(f"{directory}/config.json not found: pass a MarianMT checkpoint directory "
                                "(e.g. a local copy of Helsinki-NLP/opus-mt-en-de)")
    missing = [n for n in ("source.spm", "target.spm", "vocab.json") if not (directory / n).exists()]
    if missing:
        raise FileNotFoundError(f"{directory} lacks {missing}: copy the tokenizer files of the checkpoint too")

    def read_json(name: str) -> dict[str, Any]:
        path = directory / name
        return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}

    config = read_json("config.json")
    generation = {**config, **read_json("generation_config.json")}  # old checkpoints keep it in config.json
    return MarianCheckpoint(
        name=directory.resolve().name,  # not config's _name_or_path: often a path on the machine that converted it
        config=config,
        generation=generation,
        weights=read_weights(directory),
        source_spm=(directory / "source.spm").read_bytes(),
        target_spm=(directory / "target.spm").read_bytes(),
        vocab=read_json("vocab.json"),
        tokenizer_config=read_json("tokenizer_config.json"),
        has_target_vocab=(directory / "target_vocab.json").exists(),
    )


# -- import ----------------------------------------------------------------------------------------
def import_checkpoint(ckpt: MarianCheckpoint) -> tuple[Transformer, Tokenizer, dict[str, Any]]:
    """A read checkpoint -> (model in eval mode, tokenizer, provenance metadata); UnsupportedMarian if refused."""
    hf, tc = {**MARIAN_DEFAULTS, **ckpt.config}, ckpt.tokenizer_config
    problems = check_config(hf)
    if ckpt.has_target_vocab or tc.get("separate_vocabs"):
        problems.append("separate_vocabs=true (target_vocab.json): tzip needs one vocabulary for both sides")
    special = {name: _token_name(tc.get(f"{name}_token"), default)
               for name, default in (("pad", "<pad>"), ("eos", "</s>"), ("unk", "<unk>"))}
    try:
        vocab = MarianVocab(ckpt.vocab, **special)
    except ValueError as e:
        raise UnsupportedMarian(ckpt.name, problems + [f"vocab.json: {e}"]) from e
    problems += check_vocab(hf, vocab)
    suppress, bad_problems = suppressed_ids(ckpt.generation)
    problems += bad_problems
    if problems:
        raise UnsupportedMarian(ckpt.name, problems)

    cfg = model_config(hf, vocab)
    model = Transformer(cfg)
    expected = {k: v.shape for k, v in model.state_dict().items()}
    state, problems = state_from_marian(ckpt.weights, cfg, expected)
    if problems:
        raise UnsupportedMarian(ckpt.name, problems)
    if suppress:
        state["final_logits_bias"] = state["final_logits_bias"].clone()  # may share memory with the checkpoint
        state["final_logits_bias"][0, suppress] = SUPPRESSED_LOGIT
    model.load_state_dict(state, strict=True)
    tokenizer = Tokenizer(model_proto=ckpt.source_spm, vocab=vocab, target_proto=ckpt.target_spm)
    meta = {
        "origin": {
            "format": "marian",
            "checkpoint": ckpt.name,
            "transformers_version": hf.get("transformers_version"),
            "suppressed_ids": suppress,
            "suppressed_logit": SUPPRESSED_LOGIT if suppress else None,
        }
    }
    return model.eval(), tokenizer, meta


def model_name(checkpoint: str) -> str:
    """A manifest name from a checkpoint name: Helsinki-NLP/opus-mt-en-de -> opus-mt-en-de."""
    name = re.sub(r"[^a-z0-9._-]+", "-", checkpoint.rstrip("/").split("/")[-1].lower()).strip("-._")
    return name or "marian"


def import_marian(directory: Path | str) -> tuple[Transformer, Tokenizer, dict[str, Any]]:
    return import_checkpoint(read_checkpoint(directory))

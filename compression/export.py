"""Export a model or a compressed variant to ONNX: graphs, shared weights file, spec, tokenizer, manifest.

Pipeline per variant: read its weights (dense arrays, or the compact records of ``compression.compact``)
-> build the encoder and decoder graphs (``onnx_graphs``) -> save them with one external-data file and
check them (onnx.checker) -> optionally quantize (int8) -> open them once with ONNX Runtime -> write
the manifest (sha256 of every file, sizes, ratio, BLEU). The runtime (``compression.runtime``) reads
what this writes and nothing else.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from . import manifest as manifest_lib
from . import onnx_format as fmt
from .onnx_graphs import DenseWeights, WeightSource, build_decoder, build_encoder, save_models

log = logging.getLogger(__name__)

EXPORTED_META = ("name", "method", "bits", "sparsity", "bleu", "bleu_greedy", "retained", "base_model_bytes")


@dataclass(frozen=True)
class ExportConfig:
    """How one variant becomes ONNX; saved in its manifest under ``export``."""

    precision: str = "fp32"  # fp32 | fp16 (weights and compute, for the GPU) | int8 (dynamic quantization, for the CPU)
    compact: bool = True  # keep quantized/sparse weights compact (decoded in the graph) when the source is compact
    per_channel: bool = True  # int8: one scale per output channel

    def __post_init__(self) -> None:
        if self.precision not in fmt.PRECISIONS:
            raise ValueError(f"precision must be one of {fmt.PRECISIONS}, got {self.precision!r}")


def graph_spec(cfg, precision: str, storage: str) -> fmt.GraphSpec:
    return fmt.GraphSpec(
        decoder_layers=cfg.decoder_layers, n_heads=cfg.n_heads, head_dim=cfg.d_model // cfg.n_heads,
        vocab_size=cfg.vocab_size, max_positions=cfg.max_positions, pad_id=cfg.pad_id, eos_id=cfg.eos_id,
        decoder_start_id=cfg.decoder_start_id, precision=precision, storage=storage,
    )


def state_arrays(model) -> dict[str, np.ndarray]:
    """A torch model's parameters as float32 NumPy arrays, by parameter name."""
    return {k: v.detach().float().cpu().numpy() for k, v in model.state_dict().items() if k != "positions"}


def build_graphs(cfg, weights: WeightSource, precision: str) -> dict[str, onnx.ModelProto]:
    dtype = np.float16 if precision == "fp16" else np.float32
    return {fmt.ENCODER_FILE: build_encoder(cfg, weights, dtype), fmt.DECODER_FILE: build_decoder(cfg, weights, dtype)}


def quantize_int8(directory: Path, per_channel: bool) -> None:
    """Dynamic int8 quantization of every MatMul with a constant weight (ONNX Runtime's quantizer), in place."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantized = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in (fmt.ENCODER_FILE, fmt.DECODER_FILE):
            out = Path(tmp) / name
            quantize_dynamic(directory / name, out, op_types_to_quantize=["MatMul"], per_channel=per_channel,
                             weight_type=QuantType.QInt8, extra_options={"MatMulConstBOnly": True})
            quantized[name] = onnx.load(str(out))
    (directory / fmt.WEIGHTS_FILE).unlink()
    save_models(quantized, directory)


def write_manifest(directory: Path, meta: dict[str, Any]) -> dict[str, Any]:
    """The manifest with ``model_bytes`` = every file but the (shared) tokenizer, manifest.json included:
    rewritten until its own size stops changing, so the recorded sizes equal the bytes on disk."""
    model_bytes = 0
    for _ in range(10):
        base = meta.get("base_model_bytes")
        ratio = round(base / model_bytes, 3) if base and model_bytes else None
        written = manifest_lib.write(directory, {**meta, "model_bytes": model_bytes, "ratio": ratio})
        actual = sum(f["bytes"] for n, f in written["files"].items() if n != fmt.TOKENIZER_FILE)
        actual += (directory / manifest_lib.MANIFEST).stat().st_size
        if actual == model_bytes:
            return written
        model_bytes = actual
    raise RuntimeError(f"{directory}: manifest size did not settle")  # cannot happen: sizes converge in 2-3 rounds


def export_weights(cfg, weights: WeightSource, tokenizer_file: Path, out_dir: Path | str, meta: dict[str, Any],
                   config: ExportConfig = ExportConfig(), storage: str = "dense") -> dict[str, Any]:
    """Write one exported variant into ``out_dir`` (replaced if it holds an older export); returns its manifest."""
    out_dir = Path(out_dir)
    if out_dir.exists():
        if any(out_dir.iterdir()) and not (out_dir / manifest_lib.MANIFEST).exists():
            raise FileExistsError(f"{out_dir} exists and is not an export; choose another --out")
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    graph_precision = "fp16" if config.precision == "fp16" else "fp32"
    save_models(build_graphs(cfg, weights, graph_precision), out_dir)
    if config.precision == "int8":
        quantize_int8(out_dir, config.per_channel)
    graph_spec(cfg, config.precision, storage).save(out_dir)
    shutil.copyfile(tokenizer_file, out_dir / fmt.TOKENIZER_FILE)
    _check_loads(out_dir)
    full_meta = {**meta, "format": fmt.FORMAT, "precision": config.precision, "storage": storage,
                 "export": {"precision": config.precision, "compact": config.compact, "per_channel": config.per_channel}}
    return write_manifest(out_dir, full_meta)


def _check_loads(directory: Path) -> None:
    import onnxruntime as ort

    for name in (fmt.ENCODER_FILE, fmt.DECODER_FILE):
        ort.InferenceSession(str(directory / name), providers=["CPUExecutionProvider"])


def export_model(model, tokenizer_file: Path, out_dir: Path | str, meta: dict[str, Any],
                 config: ExportConfig = ExportConfig()) -> dict[str, Any]:
    """A PyTorch ``Transformer`` with dense weights."""
    weights = DenseWeights(state_arrays(model), untie=config.precision == "int8")
    return export_weights(model.cfg, weights, tokenizer_file, out_dir, meta, config)


def source_meta(directory: Path) -> dict[str, Any]:
    """Name, method, sizes and BLEU of a model or variant directory, from its manifest and metrics."""
    man = manifest_lib.read(directory)
    meta = {k: man[k] for k in EXPORTED_META if k in man}
    meta.setdefault("name", directory.name)
    meta.setdefault("method", man.get("method", "none"))
    metrics_file = directory / "metrics.json"
    if "bleu" not in meta and metrics_file.exists():
        test = json.loads(metrics_file.read_text()).get("test_2016_flickr", {})
        meta["bleu"] = test.get("beam5", {}).get("bleu")
        meta["bleu_greedy"] = test.get("greedy", {}).get("bleu")
    meta["source"] = {"name": meta["name"], "bytes": man.get("bytes"), "format": man.get("format")}
    return meta

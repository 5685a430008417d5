"""Export a model or a compressed variant to ONNX: graphs, shared weights file, spec, tokenizer, manifest.

Pipeline per variant: read its weights (dense arrays, or the compact records of ``compression.runtime.compact``)
-> build the encoder and decoder graphs (``onnx_graphs``) -> save them with one external-data file and
check them (onnx.checker) -> optionally quantize (int8) -> open them once with ONNX Runtime -> write
the manifest (sha256 of every file, sizes, ratio, BLEU). The runtime (``compression.runtime.translator``) reads
what this writes and nothing else.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from compression.runtime import catalogue
from compression.runtime import manifest as manifest_lib
from compression.runtime import onnx_format as fmt
from compression.runtime.catalogue import Format
from compression.runtime.graphs import DenseWeights, WeightSource, build_decoder, build_encoder, save_models
from compression.runtime.graphs_attention import build_attention
from compression.runtime.graphs_int8 import graph_spec

log = logging.getLogger(__name__)

EXPORTED_META = ("name", "method", "bits", "sparsity", "bleu", "bleu_greedy", "retained", "base_model_bytes")


@dataclass(frozen=True)
class ExportConfig:
    """How one variant becomes ONNX; saved in its manifest under ``export``."""

    precision: str = "fp32"  # fp32 | fp16 (weights and compute, for the GPU) | int8 (MatMulNBits 8-bit, for the CPU)
    compact: bool = True  # keep quantized/sparse weights compact (decoded in the graph) when the source is compact
    # a compact variant is exported in its stored form: its own weights.tzc, from which the runtime builds int8
    # (CPU) or fp16 (CUDA) graphs at load, so what is served is what was stored (False: graph files)
    stored: bool = True

    def __post_init__(self) -> None:
        if self.precision not in fmt.PRECISIONS:
            raise ValueError(f"precision must be one of {fmt.PRECISIONS}, got {self.precision!r}")


def state_arrays(model) -> dict[str, np.ndarray]:
    """A torch model's parameters as float32 NumPy arrays, by parameter name."""
    return {k: v.detach().float().cpu().numpy() for k, v in model.state_dict().items() if k != "positions"}


def build_graphs(cfg, weights: WeightSource, precision: str) -> dict[str, onnx.ModelProto]:
    dtype = np.float16 if precision == "fp16" else np.float32
    return {fmt.ENCODER_FILE: build_encoder(cfg, weights, dtype), fmt.DECODER_FILE: build_decoder(cfg, weights, dtype),
            fmt.ATTENTION_FILE: build_attention(cfg, weights, dtype)}  # analysis graph: shares weights.bin


def write_manifest(directory: Path, meta: dict[str, Any]) -> dict[str, Any]:
    """The manifest with ``model_bytes`` = every file but the (shared) tokenizer and the analysis-only
    attention graph, manifest.json included, equal to the bytes on disk."""
    base = meta.get("base_model_bytes")

    def meta_for(size: int) -> dict[str, Any]:
        return {**meta, "model_bytes": size, "ratio": round(base / size, 3) if base else None}

    return catalogue.write_sized_manifest(directory, meta_for, exclude=fmt.NOT_MODEL_FILES)


def export_weights(cfg, weights: WeightSource, tokenizer_file: Path, out_dir: Path | str, meta: dict[str, Any],
                   config: ExportConfig = ExportConfig(), storage: str = "dense") -> dict[str, Any]:
    """Write one exported variant (graph files) into ``out_dir`` through ``_write_export``; returns its manifest."""

    def fill(work: Path) -> None:
        if config.precision == "int8":  # per-row int8 weights, MatMulNBits: a row's result never depends on its batch
            save_models(int8_models(cfg, weights), work)
        else:
            save_models(build_graphs(cfg, weights, "fp16" if config.precision == "fp16" else "fp32"), work)
        graph_spec(cfg, config.precision, storage).save(work)
        shutil.copyfile(tokenizer_file, work / fmt.TOKENIZER_FILE)
        _check_loads(work)

    return _write_export(out_dir, fill, {**meta, "precision": config.precision, "storage": storage,
                                         "export": {"precision": config.precision, "compact": config.compact}})


def int8_models(cfg, weights: WeightSource) -> dict[str, onnx.ModelProto]:
    """The three graphs with int8 weights (compression.runtime.graphs_int8), from dense weights."""
    from compression.runtime.graphs_int8 import build_runtime_graphs, embed_weights

    if not isinstance(weights, DenseWeights):
        raise ValueError("int8 exports are made from dense weights (a compact variant is served in its stored form)")
    records = {n: {"kind": "dense", "shape": list(a.shape), "array": a} for n, a in weights.arrays.items()}
    graphs = build_runtime_graphs(cfg, records, "int8", "nbits8", files=fmt.GRAPH_FILES)  # weights inside the files
    return {n: embed_weights(m, graphs.arrays) for n, m in graphs.models.items()}


def _write_export(out_dir: Path | str, fill, meta: dict[str, Any]) -> dict[str, Any]:
    """Write one export into ``out_dir`` (replacing an older one there) through ``fill(work_dir)``; returns
    its manifest. Everything goes to a sibling ``.partial`` directory, moved into place only once ``fill``
    (which checks that the result loads) succeeded: a failed export leaves the previous one intact."""
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / manifest_lib.MANIFEST).exists():
        raise FileExistsError(f"{out_dir} exists and is not an export; choose another --out")
    work = out_dir.parent / f".{out_dir.name}.partial"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        fill(work)
        written = write_manifest(work, {**meta, "format": Format.ONNX.value})
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    shutil.rmtree(out_dir, ignore_errors=True)
    work.rename(out_dir)
    return written


def export_stored(source: Path, out_dir: Path | str, meta: dict[str, Any]) -> dict[str, Any]:
    """A compact variant in its stored form: its weights.tzc and variant.json, the tokenizer and a spec; the
    runtime builds the graphs from them at load (compression.runtime.memory)."""
    from compression.runtime.graphs_int8 import read_variant
    from compression.runtime.memory import load_memory_translator

    def fill(work: Path) -> None:
        for name in (*fmt.STORED_FILES, fmt.TOKENIZER_FILE):
            shutil.copyfile(source / name, work / name)
        cfg, _ = read_variant(work)
        graph_spec(cfg, "fp32").save(work)
        manifest_lib.write(work, {})  # provisional, so the load check can verify the files
        load_memory_translator(work).translate(["A dog."])

    return _write_export(out_dir, fill, {**meta, "precision": "int8", "storage": "stored",
                                         "export": {"stored": True, "cpu": "int8 MatMulNBits", "cuda": "fp16"}})


def _check_loads(directory: Path) -> None:
    import onnxruntime as ort

    for name in fmt.GRAPH_FILES:
        ort.InferenceSession(str(directory / name), providers=["CPUExecutionProvider"])


def export_model(model, tokenizer_file: Path, out_dir: Path | str, meta: dict[str, Any],
                 config: ExportConfig = ExportConfig()) -> dict[str, Any]:
    """A PyTorch ``Transformer`` with dense weights."""
    weights = DenseWeights(state_arrays(model))
    return export_weights(model.cfg, weights, tokenizer_file, out_dir, meta, config)


def source_meta(directory: Path, base_dir: Path | None = None) -> dict[str, Any]:
    """Name, method, sizes and BLEU (PyTorch) of a model or variant directory, from its manifest and metrics."""
    man = manifest_lib.read(directory)
    meta: dict[str, Any] = {"name": man.get("name"), "method": man.get("method", "none"), "bits": None, "sparsity": None}
    meta.update({k: man[k] for k in EXPORTED_META if k in man})
    metrics_file = directory / "metrics.json"
    if meta.get("bleu") is None and metrics_file.exists():
        test = json.loads(metrics_file.read_text()).get("test_2016_flickr", {})
        meta["bleu"] = test.get("beam5", {}).get("bleu")
        meta["bleu_greedy"] = test.get("greedy", {}).get("bleu")
    if meta.get("base_model_bytes") is None and base_dir is not None:
        meta["base_model_bytes"] = catalogue.model_bytes(base_dir)
    meta["source"] = {"name": man.get("name"), "format": man.get("format"), "bytes": man.get("bytes"),
                      "model_bytes": man.get("model_bytes", catalogue.model_bytes(directory))}
    return meta


def default_precision(meta: dict[str, Any]) -> str:
    """fp16 and int8 baselines become the fp16 (GPU) and int8-dynamic (CPU) graphs; the rest fp32."""
    return {"fp16": "fp16", "int8": "int8"}.get(str(meta.get("method")), "fp32")


def export_directory(source: Path | str, out_dir: Path | str, config: ExportConfig | None = None,
                     base_dir: Path | str | None = None, meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """Export a model directory (PyTorch checkpoint) or a compressed variant directory (compact weights).

    ``config`` defaults to the precision the source's method calls for (``default_precision``); ``meta``
    overrides manifest fields (e.g. a new name for a derived export). Every file of the source is
    verified against its manifest first."""
    source = Path(source)
    manifest_lib.verify(source)
    base_dir = Path(base_dir) if base_dir is not None else catalogue.DEFAULT_MODEL
    full_meta = {**source_meta(source, base_dir), **(meta or {})}
    config = config or ExportConfig(precision=default_precision(full_meta))
    if config.stored and config.precision == "fp32" and (source / fmt.STORED_FILES[0]).exists():
        return export_stored(source, out_dir, full_meta)
    weights, cfg, storage = read_weights(source, config)
    return export_weights(cfg, weights, source / fmt.TOKENIZER_FILE, out_dir, full_meta, config, storage)


def read_weights(source: Path, config: ExportConfig) -> tuple[WeightSource, Any, str]:
    """(weight source, ModelConfig, storage) of a checkpoint or a compact variant directory."""
    from compression.train.model import ModelConfig

    dense = config.precision == "int8"  # int8 graphs are built from dense arrays (int8_models)
    variant_file = source / "variant.json"
    if variant_file.exists():
        from compression.runtime import compact
        from compression.runtime.graphs_compact import CompactWeights

        cfg = ModelConfig.from_dict(json.loads(variant_file.read_text())["model"])
        records = compact.read_tensors(source)
        all_dense = all(r["kind"] == "dense" for r in records.values())
        if config.compact and not dense and not (all_dense and config.precision == "fp32"):
            return CompactWeights(records), cfg, "dense" if all_dense else "compact"
        return DenseWeights({n: compact.dequantize(r) for n, r in records.items()}), cfg, "dense"
    from compression.train.checkpoint import load_model

    model, _ = load_model(source)
    return DenseWeights(state_arrays(model)), model.cfg, "dense"


def export_model_meta(out_dir: Path, extra: dict[str, Any]) -> dict[str, Any]:
    """Add fields (e.g. BLEU measured through ONNX Runtime) to an export's manifest."""
    old = manifest_lib.read(out_dir)
    return write_manifest(out_dir, {**{k: v for k, v in old.items() if k not in ("files", "bytes", "model_bytes", "ratio")},
                                    **extra})


@dataclass(frozen=True)
class ExportJob:
    name: str
    source: Path
    precision: str
    base_dir: Path
    meta: dict


SPEED_VARIANTS = {  # exported from the base when no compressed variant of that name exists
    "fp16": {"method": "fp16", "bits": 16, "precision": "fp16"},
    "int8": {"method": "int8-dynamic", "bits": 8, "precision": "int8"},
}


def plan_exports(names: list[str] | None, model_dir: Path | str | None = None,
                 variants_root: Path | str | None = None) -> list[ExportJob]:
    """What to export: the named variants, or (names=None) the base, every variant found under
    ``variants_root`` by its manifest, and the fp16/int8 speed variants."""
    base_dir = Path(model_dir) if model_dir else catalogue.DEFAULT_MODEL
    base_name = manifest_lib.read(base_dir).get("name", "base")
    found: dict[str, Path] = {base_name: base_dir}
    for v in catalogue.list_variants(variants_root or catalogue.MODELS_ROOT):
        found.setdefault(v["name"], Path(v["path"]))
    wanted = names if names is not None else sorted(found, key=lambda n: (n != base_name, n)) + \
        [n for n in SPEED_VARIANTS if n not in found]
    jobs = []
    for name in wanted:
        if name in found:
            meta = {"name": name}
            precision = default_precision(manifest_lib.read(found[name]))
            jobs.append(ExportJob(name, found[name], precision, base_dir, meta))
        elif name in SPEED_VARIANTS:
            spec = SPEED_VARIANTS[name]
            meta = {"name": name, "method": spec["method"], "bits": spec["bits"], "bleu": None, "bleu_greedy": None,
                    "derived_from": base_name}
            jobs.append(ExportJob(name, base_dir, spec["precision"], base_dir, meta))
        else:
            raise KeyError(f"no model or variant named {name!r}; known: {sorted(set(found) | set(SPEED_VARIANTS))} "
                           "(compress one with `python -m compression compress --config configs/variants/<name>.toml`)")
    return jobs


def evaluate_export(directory: Path | str, limit: int | None = None, batch_size: int = 64,
                    sessions=None) -> dict[str, Any]:
    """Test BLEU (greedy and beam 5) through ONNX Runtime on the CPU, recorded in the export's manifest as
    ``bleu_onnx`` / ``bleu_greedy_onnx`` (and as ``bleu`` where the source had no PyTorch score)."""
    from compression.runtime.translator import open_translator
    from compression.train.evaluate import evaluate

    directory = Path(directory)
    result = evaluate(open_translator(directory, sessions), "test_2016_flickr", (1, 5), limit, batch_size)
    extra: dict[str, Any] = {"bleu_onnx": result["beam5"]["bleu"], "bleu_greedy_onnx": result["greedy"]["bleu"],
                             "onnx_eval": {"limit": limit, "provider": result["provider"]}}
    old = manifest_lib.read(directory)
    if old.get("bleu") is None and limit is None:
        extra.update(bleu=extra["bleu_onnx"], bleu_greedy=extra["bleu_greedy_onnx"])
    return export_model_meta(directory, extra)

"""One entry point, ``compress(model, config)``: a typed variant config in, compact records out.

A ``VariantConfig`` names the variant, picks one method config (the registry maps each config type to
its method) and, optionally, a fine-tuning schedule (compression/compress/finetune.py). Without one the method
is applied post-training. The records are what compression/runtime/compact.py writes.
"""

from __future__ import annotations

import copy
import json
import tomllib
from pathlib import Path
from typing import Annotated, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from compression.compress.finetune import FinetuneConfig, finetune
from compression.compress.methods import Method, compressible
from compression.compress.methods.baseline import Fp16, Fp16Config, Int8, Int8Config
from compression.compress.methods.binarize import Binarize, BinarizeConfig
from compression.compress.methods.deep import Deep, DeepConfig
from compression.compress.methods.kmeans import KMeans, KMeansConfig
from compression.compress.methods.prune import Prune, PruneConfig
from compression.runtime import compact
from compression.runtime.tokenizer import Tokenizer
from compression.train.model import Transformer

MethodConfig = Annotated[
    KMeansConfig | BinarizeConfig | PruneConfig | DeepConfig | Fp16Config | Int8Config, Field(discriminator="type")]

#: config type -> method; add a method by adding a module under methods/ and one line here
REGISTRY: dict[type, type[Method]] = {
    KMeansConfig: KMeans, BinarizeConfig: Binarize, PruneConfig: Prune, DeepConfig: Deep,
    Fp16Config: Fp16, Int8Config: Int8,
}


class VariantConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*$", description="the variant's name, e.g. kmeans-2bit")
    description: str = ""
    base: str = Field("models/base", description="base model directory (relative to the repository root)")
    init: str | None = Field(
        None, description="a variant directory whose weights start the student (to continue an earlier "
        "retraining); the teacher stays `base`. None: the student starts as a copy of the base")
    method: MethodConfig
    finetune: FinetuneConfig | None = Field(None, description="retraining schedule; none = post-training")
    dense_dtype: Literal["float16", "float32"] = Field(
        "float16", description="storage of what no method compresses: biases, LayerNorm, final_logits_bias")
    dense_bits: int | None = Field(
        None, ge=2, le=8, description="store those vectors instead on a per-tensor affine grid of this many bits "
        "(compact.grid_encode, applied after retraining); None: dense_dtype")

    @classmethod
    def load(cls, path: Path | str) -> VariantConfig:
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"variant config {path} not found; see configs/variants/ for examples")
        text = path.read_text()
        return cls.model_validate(tomllib.loads(text) if path.suffix == ".toml" else json.loads(text))

    @property
    def bits(self) -> int | None:
        return self.method.bits

    @property
    def sparsity(self) -> float | None:
        return self.method.sparsity


def build_method(cfg: BaseModel, weights: dict[str, torch.Tensor]) -> Method:
    try:
        cls = REGISTRY[type(cfg)]
    except KeyError:
        raise ValueError(f"no method for {type(cfg).__name__}; known: {[c.__name__ for c in REGISTRY]}") from None
    return cls(cfg, weights)


def dense_records(model: Transformer, skip: set[str], dtype: str, bits: int | None = None) -> dict[str, dict]:
    """Records of the parameters no method compresses: ``dtype`` arrays, or ``bits``-bit grid codes."""
    out = {}
    for n, p in model.named_parameters():
        if n in skip:
            continue
        a = p.detach().float().cpu().numpy()
        if bits is None:
            out[n] = {"kind": "dense", "shape": list(p.shape), "array": a.astype(dtype)}
        else:
            grid = compact.grid_encode(a, bits)
            out[n] = {"kind": "dense", "shape": list(p.shape), "array": compact.grid_decode(grid), "grid": grid}
    return out


def compress(
    model: Transformer,
    config: VariantConfig,
    tokenizer: Tokenizer | None = None,
    device: str | torch.device = "cpu",
    log: list | None = None,
    init: Transformer | None = None,
) -> dict[str, dict]:
    """Compress a copy of ``model`` (post-training, or retrained with distillation from ``model``); with
    ``init`` (e.g. an earlier variant's dequantised model), the student starts from ``init``'s weights."""
    device = torch.device(device)
    teacher = model.to(device).eval()
    if init is not None and init.cfg != model.cfg:
        raise ValueError(f"init model's shape {init.cfg} differs from the base model's {model.cfg}; "
                         "continue only from a variant of this base")
    student = copy.deepcopy(init if init is not None else teacher).to(device)
    names = compressible(student)
    weights = {n: student.get_parameter(n).data for n in names}
    method = build_method(config.method, weights).to(device)
    if config.finetune is None:
        method.update(weights, 1.0, 0)
    else:
        if tokenizer is None:
            raise ValueError("fine-tuning needs the tokenizer of the base model")
        history = finetune(student, method, names, config.finetune, tokenizer, teacher, device)
        if log is not None:
            log.extend(history)
    records = {**dense_records(student, set(names), config.dense_dtype, config.dense_bits),
               **method.records({n: student.get_parameter(n).data for n in names})}
    return {n: records[n] for n, _ in student.named_parameters()}  # the model's parameter order

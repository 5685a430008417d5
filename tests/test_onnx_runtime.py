"""The exported graphs and the torch-free runtime on a tiny model: parity with PyTorch, integrity, providers."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from compression.runtime import manifest
from compression.runtime.catalogue import list_exported
from compression.runtime.search import SearchConfig
from compression.runtime.sessions import SessionFactory
from compression.runtime.translator import OnnxTranslator, load_translator
from tests.onnx_fixtures import SOURCES, export_tiny, tiny_export_fixture, tiny_model_and_tokenizer  # noqa: F401


@pytest.fixture(scope="module")
def torch_tiny():
    from compression.train.translator import TorchTranslator

    model, tok = tiny_model_and_tokenizer(seed=0)
    return TorchTranslator(model, tok)


def test_greedy_is_token_identical_to_pytorch(tiny_export, torch_tiny):
    onnx_tr = load_translator(tiny_export)
    ids = onnx_tr.tokenizer.encode(SOURCES)
    cfg = SearchConfig(beam=1)
    for batch in (ids, ids[:1], ids[3:5]):  # batched with padding, and single sentences
        assert onnx_tr.translate_ids(batch, cfg) == torch_tiny.translate_ids(batch, cfg)


def test_beam_search_matches_pytorch(tiny_export, torch_tiny):
    onnx_tr = load_translator(tiny_export)
    ids = onnx_tr.tokenizer.encode(SOURCES)
    cfg = SearchConfig(beam=4)
    assert onnx_tr.translate_ids(ids, cfg) == torch_tiny.translate_ids(ids, cfg)


def test_decoder_step_logprobs_match_pytorch(tiny_export, torch_tiny):
    """Numerics, not only argmax: the first three steps' log-probabilities agree to 1e-4."""
    import torch

    from compression.runtime.search import pad_batch
    from compression.runtime.translator import OrtStepper
    from compression.train.translator import TorchStepper

    onnx_tr = OnnxTranslator(tiny_export)  # the step-wise runtime (load_translator gives the greedy Loop one)
    src = pad_batch(onnx_tr.tokenizer.encode(SOURCES[:3]), 0)
    ref = TorchStepper(torch_tiny.model, torch.from_numpy(src), 1)
    ort_stepper = OrtStepper(onnx_tr, src, 1)
    last = np.zeros(3, dtype=np.int64)
    with torch.no_grad():
        for _ in range(3):
            a, b = ref.step(last, None), ort_stepper.step(last, None)
            np.testing.assert_allclose(b, a, atol=1e-4)
            last = a.argmax(-1)


def test_manifest_sizes_equal_bytes_on_disk(tiny_export):
    man = manifest.read(tiny_export)
    for name, rec in man["files"].items():
        assert (tiny_export / name).stat().st_size == rec["bytes"], name
    on_disk = sum(p.stat().st_size for p in tiny_export.iterdir() if p.name not in ("tokenizer.model", "attention.onnx"))
    assert man["model_bytes"] == on_disk
    assert man["bytes"] == sum(p.stat().st_size for p in tiny_export.iterdir() if p.name != "manifest.json")
    assert {"encoder.onnx", "decoder.onnx", "weights.bin", "tokenizer.model", "onnx_config.json"} <= set(man["files"])
    assert man["format"] == "tzip-onnx" and man["name"] == "tiny" and man["precision"] == "fp32"


def test_embedding_shared_by_both_graphs_is_stored_once(tiny_export):
    model, _ = tiny_model_and_tokenizer(0)
    params = sum(p.numel() for p in model.parameters())
    weights = (tiny_export / "weights.bin").stat().st_size
    assert weights < 4 * params * 1.05  # one fp32 copy (+ alignment), not two embeddings


def test_sha256_mismatch_refuses_to_load(tmp_path, tiny_export):
    bad = tmp_path / "bad"
    shutil.copytree(tiny_export, bad)
    data = bytearray((bad / "weights.bin").read_bytes())
    data[100] ^= 0xFF
    (bad / "weights.bin").write_bytes(bytes(data))
    with pytest.raises(manifest.IntegrityError, match="weights.bin.*re-export"):
        load_translator(bad)


def test_unavailable_cuda_is_reported_as_cpu(tiny_export, caplog):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this machine has CUDA: the fallback cannot be observed")
    with caplog.at_level(logging.WARNING, logger="compression.runtime.translator"):
        tr = load_translator(tiny_export, sessions=SessionFactory(device="cuda"))
    assert tr.provider == "CPUExecutionProvider"
    assert "CUDA requested" in caplog.text
    assert tr.translate(SOURCES[:2])  # and it still translates


def test_variants_are_found_by_manifest_name_not_directory(tmp_path):
    export_tiny(tmp_path, name="tiny-a", seed=0)
    (tmp_path / "tiny-a").rename(tmp_path / "somewhere-else")
    assert [m["name"] for m in list_exported(tmp_path)] == ["tiny-a"]
    tr = load_translator(tmp_path, variant="tiny-a")
    assert tr.directory.name == "somewhere-else"
    with pytest.raises(FileNotFoundError, match="tiny-a.*python -m compression export"):
        load_translator(tmp_path, variant="nope")


def test_not_an_export_names_the_fix(tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps({"name": "x", "format": "tzip-fp32", "files": {}}))
    with pytest.raises(FileNotFoundError, match="export"):
        OnnxTranslator(tmp_path)


def test_runtime_imports_no_torch():
    code = "import sys, compression.runtime.translator; assert 'torch' not in sys.modules, 'runtime imported torch'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parent.parent)

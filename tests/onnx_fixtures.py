"""A tiny exported ONNX variant for tests (built in about a second; needs torch to build, not to run).

Use it from any test module:

    from tests.onnx_fixtures import export_tiny, tiny_export_fixture  # noqa: F401  (registers the fixture)

    def test_something(tiny_export):       # session-scoped: the directory of an exported "tiny" variant
        ...
    def test_other(tmp_path):
        d = export_tiny(tmp_path, name="tiny-b", seed=1)   # another, with different weights

The variant is a random Transformer (2+2 layers, d32) over a 120-piece SentencePiece vocabulary:
its translations are nonsense but deterministic, which is what parity and service tests need.
"""

from __future__ import annotations

from pathlib import Path

import pytest

SENTENCES = [
    "A man is riding a bike.", "Ein Mann fährt Fahrrad.",
    "Two dogs play in the snow.", "Zwei Hunde spielen im Schnee.",
    "A woman is reading a book.", "Eine Frau liest ein Buch.",
    "Children are playing soccer.", "Kinder spielen Fußball.",
    "A girl is eating an apple.", "Ein Mädchen isst einen Apfel.",
    "The cat sleeps on the sofa.", "Die Katze schläft auf dem Sofa.",
    "A boy jumps into the water.", "Ein Junge springt ins Wasser.",
    "Three people walk down the street.", "Drei Leute gehen die Straße entlang.",
]
SOURCES = SENTENCES[0::2]


def tiny_model_and_tokenizer(seed: int = 0, eos_bias: float = 0.0):
    """(Transformer, Tokenizer): random weights from ``seed``; LayerNorms and biases perturbed so they matter.
    ``eos_bias`` is added to EOS's logit: a random model then ends its sentences at varied lengths (beam search
    tests need hypotheses that finish by EOS, not only by the length limit)."""
    import torch

    from compression.runtime.tokenizer import train_tokenizer
    from compression.train.model import ModelConfig, Transformer

    tok = train_tokenizer(SENTENCES * 4, vocab_size=120)
    torch.manual_seed(seed)
    cfg = ModelConfig(vocab_size=tok.vocab_size, d_model=32, n_heads=2, ffn_dim=64, encoder_layers=2,
                      decoder_layers=2, dropout=0.0, max_positions=64)
    model = Transformer(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1 or name == "final_logits_bias":
                p.add_(0.1 * torch.randn_like(p))
        model.final_logits_bias[0, tok.eos_id] += eos_bias
    return model, tok


def export_tiny(out_dir: Path | str, name: str = "tiny", seed: int = 0, precision: str = "fp32",
                bleu: float | None = 1.0, eos_bias: float = 0.0) -> Path:
    """Export a tiny random model as variant ``name`` into ``out_dir/name``; returns that directory."""
    from compression.export.writer import ExportConfig, export_model

    model, tok = tiny_model_and_tokenizer(seed, eos_bias)
    out = Path(out_dir) / name
    out.mkdir(parents=True, exist_ok=True)
    tok_file = Path(out_dir) / f".{name}.tokenizer.model"
    tok.save(tok_file)
    meta = {"name": name, "method": "none", "bits": None, "sparsity": None, "bleu": bleu, "bleu_greedy": bleu,
            "base_model_bytes": None}
    export_model(model, tok_file, out, meta, ExportConfig(precision=precision))
    tok_file.unlink()
    return out


@pytest.fixture(scope="session", name="tiny_export")
def tiny_export_fixture(tmp_path_factory) -> Path:
    """The directory of an exported tiny variant named "tiny" (shared by the whole session: do not modify it)."""
    return export_tiny(tmp_path_factory.mktemp("onnx"), "tiny")

"""Shared fixtures: a tiny tokenizer and model built in seconds (no files from the repo's models/)."""

from __future__ import annotations

import pytest

PAIRS = [
    ("A man is riding a bike.", "Ein Mann fährt Fahrrad."),
    ("Two dogs play in the snow.", "Zwei Hunde spielen im Schnee."),
    ("A woman is reading a book.", "Eine Frau liest ein Buch."),
    ("Children are playing soccer.", "Kinder spielen Fußball."),
    ("A girl is eating an apple.", "Ein Mädchen isst einen Apfel."),
    ("The cat sleeps on the sofa.", "Die Katze schläft auf dem Sofa."),
    ("A boy jumps into the water.", "Ein Junge springt ins Wasser."),
    ("Three people walk down the street.", "Drei Leute gehen die Straße entlang."),
]


@pytest.fixture(scope="session")
def tiny_tokenizer():
    from compression.runtime.tokenizer import train_tokenizer

    return train_tokenizer([s for p in PAIRS for s in p] * 4, vocab_size=120)


@pytest.fixture
def tiny_model(tiny_tokenizer):
    import torch

    from compression.train.model import ModelConfig, Transformer

    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=tiny_tokenizer.vocab_size, d_model=32, n_heads=2, ffn_dim=64,
                      encoder_layers=2, decoder_layers=2, dropout=0.0, max_positions=64)
    return Transformer(cfg).eval()

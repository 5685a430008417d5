import json

import torch

from compression.train.trainer import TrainConfig, lr_at, make_batches, train

TINY = {
    "vocab_size": 300, "max_tokens": 400, "lr": 3e-3, "warmup_steps": 10, "epochs": 2, "eval_every": 1,
    "eval_limit": 8, "train_limit": 120, "average_last": 2, "seed": 3,
    "model": {"d_model": 32, "n_heads": 2, "ffn_dim": 64, "encoder_layers": 1, "decoder_layers": 1, "dropout": 0.1},
}


def test_loss_falls_and_model_is_saved(tmp_path):
    summary = train(TrainConfig(**TINY), tmp_path / "run", device="cpu")
    losses = [h["loss"] for h in summary["history"]]
    assert losses[-1] < losses[0]
    assert (tmp_path / "run" / "model" / "manifest.json").exists()
    assert summary["selection"]["chosen"] in summary["selection"]["candidates"]
    saved = json.loads((tmp_path / "run" / "model" / "config.json").read_text())
    assert saved["train"]["seed"] == 3 and saved["model"]["d_model"] == 32


def test_resume_continues_exactly(tmp_path):
    train(TrainConfig(**TINY), tmp_path / "full", device="cpu")
    train(TrainConfig(**{**TINY, "epochs": 1}), tmp_path / "part", device="cpu")
    train(TrainConfig(**TINY), tmp_path / "part", resume=True, device="cpu")
    a = torch.load(tmp_path / "full" / "last.pt", weights_only=False)
    b = torch.load(tmp_path / "part" / "last.pt", weights_only=False)
    assert a["state"]["step"] == b["state"]["step"]
    for k in a["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], atol=1e-6, rtol=1e-5)


def test_batches_respect_token_budget():
    import random

    pairs = [([5] * n, [6] * (n + 2)) for n in range(1, 60)]
    batches = make_batches(pairs, 100, random.Random(0))
    assert sorted(i for b in batches for i in b) == list(range(len(pairs)))
    for b in batches:
        longest = max(max(len(pairs[i][0]), len(pairs[i][1]) + 1) for i in b)
        assert longest * len(b) <= 100 or len(b) == 1


def test_warmup_then_inverse_sqrt():
    cfg = TrainConfig(lr=1e-3, warmup_steps=100)
    assert lr_at(50, cfg) < lr_at(100, cfg) == 1e-3
    assert abs(lr_at(400, cfg) - 5e-4) < 1e-12


def test_config_rejects_unknown_keys():
    import pytest
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="learning_rate"):
        TrainConfig(learning_rate=1.0)

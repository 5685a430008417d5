import pytest
import torch
import torch.nn.functional as F

from compression.runtime.search import SearchConfig
from compression.train.checkpoint import load_model, save_model
from compression.train.model import ModelConfig, Transformer, sinusoidal_positions
from compression.train.trainer import collate
from compression.train.translator import TorchTranslator
from tests.conftest import PAIRS


def overfit(model: Transformer, tok, steps: int = 250) -> Transformer:
    """Teach the tiny model the eight PAIRS by heart."""
    torch.manual_seed(0)
    pairs = list(zip(tok.encode([s for s, _ in PAIRS]), tok.encode([t for _, t in PAIRS]), strict=True))
    src, tin, tout = collate(pairs, list(range(len(pairs))), model.cfg, "cpu")
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        loss = F.cross_entropy(model(src, tin).flatten(0, 1), tout.flatten(), ignore_index=-100)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


@pytest.fixture(scope="module")
def trained(tiny_tokenizer):
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=tiny_tokenizer.vocab_size, d_model=48, n_heads=2, ffn_dim=96,
                      encoder_layers=2, decoder_layers=2, dropout=0.0, max_positions=64)
    return overfit(Transformer(cfg), tiny_tokenizer)


def test_overfit_translates_exactly(trained, tiny_tokenizer):
    tr = TorchTranslator(trained, tiny_tokenizer)
    src = [s for s, _ in PAIRS]
    assert tr.translate(src, SearchConfig(beam=1)) == [t for _, t in PAIRS]
    assert tr.translate(src, SearchConfig(beam=4)) == [t for _, t in PAIRS]


def test_beam_one_equals_greedy(tiny_model, tiny_tokenizer):
    tr = TorchTranslator(tiny_model, tiny_tokenizer)
    src = [s for s, _ in PAIRS]
    ids = tiny_tokenizer.encode(src)
    greedy = tr.translate_ids(ids, SearchConfig(beam=1, max_len=20))
    assert greedy == tr.translate_ids(ids, SearchConfig(beam=1, max_len=20))
    from compression.runtime.search import beam_search
    from compression.train.translator import TorchStepper, pad_batch

    src_t = torch.from_numpy(pad_batch(ids, 0))
    with torch.no_grad():
        beam1 = beam_search(TorchStepper(tiny_model, src_t, 1), [20] * len(ids), 1, 0, 1, 1.0)
    assert beam1 == greedy


@pytest.mark.parametrize("beam", [1, 3])
def test_batched_equals_unbatched(trained, tiny_tokenizer, beam):
    tr = TorchTranslator(trained, tiny_tokenizer)
    src = [s for s, _ in PAIRS] + ["A dog.", "Snow."]
    cfg = SearchConfig(beam=beam, max_len=30)
    batched = tr.translate(src, cfg, batch_size=16)
    single = [tr.translate([s], cfg, batch_size=1)[0] for s in src]
    assert batched == single


def test_kv_cache_matches_full_forward(tiny_model):
    torch.manual_seed(1)
    src = torch.randint(3, tiny_model.cfg.vocab_size, (2, 7))
    src[1, 5:] = tiny_model.cfg.pad_id
    tgt = torch.randint(3, tiny_model.cfg.vocab_size, (2, 6))
    with torch.no_grad():
        full = tiny_model(src, tgt)
        memory, mask = tiny_model.encode(src)
        cross = tiny_model.cross_kv(memory)
        past, steps = None, []
        for t in range(tgt.shape[1]):
            logits, past = tiny_model.decode(tgt[:, t : t + 1], cross, mask, past)
            steps.append(logits)
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-5, rtol=1e-5)


def test_prenorm_gelu_swish_variants_run(tiny_tokenizer):
    for act, pre in [("gelu", True), ("swish", False)]:
        cfg = ModelConfig(vocab_size=tiny_tokenizer.vocab_size, d_model=16, n_heads=2, ffn_dim=32,
                          encoder_layers=1, decoder_layers=1, activation=act, normalize_before=pre)
        m = Transformer(cfg).eval()
        assert (m.encoder.layer_norm is not None) == pre
        out = m(torch.tensor([[5, 6, 1]]), torch.tensor([[0, 7]]))
        assert out.shape == (1, 2, tiny_tokenizer.vocab_size)


def test_invalid_config_names_the_problem():
    with pytest.raises(ValueError, match="activation 'tanh'"):
        ModelConfig(activation="tanh")
    with pytest.raises(ValueError, match="not divisible by n_heads"):
        ModelConfig(d_model=30, n_heads=4)


def test_marian_sinusoid_layout():
    pe = sinusoidal_positions(4, 6)
    assert torch.allclose(pe[:, 0], torch.sin(torch.arange(4.0)))  # first half: sin
    assert torch.allclose(pe[:, 3], torch.cos(torch.arange(4.0)))  # second half: cos, same frequencies


def test_checkpoint_round_trip_bit_identical(trained, tiny_tokenizer, tmp_path):
    save_model(tmp_path / "m", trained, tiny_tokenizer, metrics={"x": 1})
    loaded, tok = load_model(tmp_path / "m")
    for (k, a), (k2, b) in zip(trained.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert k == k2 and torch.equal(a, b), k
    assert tok.proto == tiny_tokenizer.proto


def test_tampered_checkpoint_refused(trained, tiny_tokenizer, tmp_path):
    from compression.runtime.manifest import IntegrityError

    save_model(tmp_path / "m", trained, tiny_tokenizer)
    shard = next((tmp_path / "m").glob("model-*.safetensors"))
    data = bytearray(shard.read_bytes())
    data[-1] ^= 1
    shard.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="modified or corrupted"):
        load_model(tmp_path / "m")


def test_output_length_is_capped_by_the_position_table(tiny_tokenizer):
    from compression.train.model import ModelConfig, Transformer

    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=tiny_tokenizer.vocab_size, d_model=16, n_heads=2, ffn_dim=32,
                      encoder_layers=1, decoder_layers=1, max_positions=12)
    tr = TorchTranslator(Transformer(cfg).eval(), tiny_tokenizer)
    long_text = " ".join(s for s, _ in PAIRS)  # longer than 12 positions on both sides
    out = tr.translate_ids(tiny_tokenizer.encode([long_text]), SearchConfig(beam=2, max_len=200))
    assert len(out[0]) <= 12

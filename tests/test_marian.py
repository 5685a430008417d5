"""MarianMT import/export against transformers and CTranslate2, without downloads.

A tiny random MarianMTModel (with its own SentencePiece models and a Marian-style vocab.json:
eos 0, unk 1, pad last) is built here; the shipped models/base covers the other direction.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import sentencepiece as spm
import torch

from compression.interop.marian_export import export_marian
from compression.interop.marian_import import (
    SUPPRESSED_LOGIT,
    UnsupportedMarian,
    import_checkpoint,
    read_checkpoint,
)
from compression.runtime.search import SearchConfig, pad_batch
from compression.train.translator import TorchTranslator

transformers = pytest.importorskip("transformers")
# MarianTokenizer asks for sacremoses, which only its unused normalize() needs
pytestmark = pytest.mark.filterwarnings("ignore:Recommended. pip install sacremoses")
GREEDY = SearchConfig(beam=1, max_len=30)
TEXTS = [
    "A man in an orange hat starring at something.",
    "Two young girls are playing in the sand.",
    "A dog runs on the grass.",
    "Zürich: naïve €5 東京",  # characters the tiny SentencePiece models do not know
    ">>de<< A woman sings.",  # a language code, one token as MarianTokenizer makes it
]


def _train_spm(lines: list[str], size: int) -> bytes:
    out = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(lines), model_writer=out, vocab_size=size, minloglevel=2,
                                   num_threads=2, hard_vocab_limit=False, character_coverage=1.0)
    return out.getvalue()


def build_tiny_marian(directory: Path) -> None:
    """A random MarianMTModel laid out like opus-mt-en-de: joint vocab.json, swish, scaled embeddings."""
    from compression.train.data import load_split

    pairs = load_split("val")[:400]
    protos = [_train_spm([p[side] for p in pairs], 120) for side in (0, 1)]
    pieces = ["</s>", "<unk>"]
    for proto in protos:
        sp = spm.SentencePieceProcessor(model_proto=proto)
        pieces += [sp.id_to_piece(i) for i in range(3, sp.get_piece_size()) if sp.id_to_piece(i) not in pieces]
    pieces.remove("▁a")  # a frequent source piece the vocabulary lacks: it must become unk, as in transformers
    vocab = {p: i for i, p in enumerate(pieces + ["<pad>"])}
    pad = len(vocab) - 1
    cfg = transformers.MarianConfig(
        vocab_size=len(vocab), d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
        decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=128,
        pad_token_id=pad, eos_token_id=0, decoder_start_token_id=pad, activation_function="swish",
        scale_embedding=True, init_std=0.2,
    )
    torch.manual_seed(0)
    hf = transformers.MarianMTModel(cfg).eval()
    with torch.no_grad():  # make every weight matter: layer norms and the output bias are not at their init
        for name, p in hf.named_parameters():
            if "layer_norm" in name:
                p.add_(torch.randn_like(p) * 0.1)
        hf.final_logits_bias.normal_(0, 0.5)
    hf.generation_config.bad_words_ids = [[pad]]  # as opus-mt's generation_config.json
    hf.save_pretrained(directory)
    (directory / "source.spm").write_bytes(protos[0])
    (directory / "target.spm").write_bytes(protos[1])
    (directory / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (directory / "tokenizer_config.json").write_text(json.dumps({"source_lang": "en", "target_lang": "de"}))


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models: one thread is faster, and far faster when other work shares the cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("opus-mt-tiny")
    build_tiny_marian(directory)
    return directory


@pytest.fixture(scope="module")
def hf_pair(hf_dir):
    return transformers.MarianMTModel.from_pretrained(hf_dir).eval(), transformers.MarianTokenizer.from_pretrained(hf_dir)


@pytest.fixture(scope="module")
def imported(hf_dir):
    return import_checkpoint(read_checkpoint(hf_dir))


# -- helpers ---------------------------------------------------------------------------------------
def hf_greedy(hf, src_ids: list[list[int]], pad: int, eos: int, cfg: SearchConfig) -> list[list[int]]:
    """transformers' greedy search under tzip's length limits; no EOS forced at the limit, as tzip."""
    src = torch.from_numpy(pad_batch(src_ids, pad))
    limits = [cfg.limit(len(s)) for s in src_ids]
    with torch.no_grad():
        out = hf.generate(input_ids=src, attention_mask=(src != pad).long(), num_beams=1, do_sample=False,
                          max_new_tokens=max(limits), forced_eos_token_id=None)
    rows = []
    for row, limit in zip(out[:, 1:].tolist(), limits, strict=True):
        rows.append((row[: row.index(eos)] if eos in row else row)[:limit])
    return rows


def teacher_forced(model, hf, src_ids: list[list[int]], hyps: list[list[int]]):
    """Logits of both models on our hypotheses (decoder input = start + hypothesis), valid positions only."""
    c = model.cfg
    src = torch.from_numpy(pad_batch(src_ids, c.pad_id))
    tgt = torch.from_numpy(pad_batch([[c.decoder_start_id] + h for h in hyps], c.pad_id))
    valid = torch.zeros(tgt.shape, dtype=torch.bool)
    for i, h in enumerate(hyps):
        valid[i, : len(h) + 1] = True
    with torch.no_grad():
        ours = model(src, tgt)
        theirs = hf(input_ids=src, attention_mask=(src != c.pad_id).long(), decoder_input_ids=tgt).logits
    return ours[valid], theirs[valid]


# -- import ----------------------------------------------------------------------------------------
def test_tokenizer_ids_match_marian_tokenizer(imported, hf_pair):
    _, tok, _ = imported
    _, htok = hf_pair
    ids = tok.encode(TEXTS)
    assert ids == htok(TEXTS)["input_ids"]
    assert any(tok.unk_id in x[:-1] for x in ids)  # the unknown-piece path is exercised


def test_import_matches_transformers(imported, hf_pair):
    model, tok, meta = imported
    hf, htok = hf_pair
    pad, eos = model.cfg.pad_id, model.cfg.eos_id
    assert (pad, eos, model.cfg.unk_id) == (hf.config.vocab_size - 1, 0, 1)
    ids = tok.encode(TEXTS)
    hyps = TorchTranslator(model, tok).translate_ids(ids, GREEDY)
    assert hyps == hf_greedy(hf, ids, pad, eos, GREEDY)
    assert sum(len(h) for h in hyps) > 20
    ours, theirs = teacher_forced(model, hf, ids, hyps)
    keep = torch.arange(ours.shape[-1]) != pad  # pad is suppressed (bad_words_ids) in the bias instead
    assert (ours[:, keep] - theirs[:, keep]).abs().max() < 1e-4
    assert (ours[:, pad] < SUPPRESSED_LOGIT / 2).all() and meta["origin"]["suppressed_ids"] == [pad]
    assert tok.decode(hyps) == htok.batch_decode(hyps, skip_special_tokens=True)


def test_tokenizer_bundle_round_trip(imported, tmp_path):
    from compression.runtime.tokenizer import Tokenizer

    _, tok, _ = imported
    tok.save(tmp_path / "tokenizer.model")
    again = Tokenizer(tmp_path / "tokenizer.model")
    assert again.encode(TEXTS) == tok.encode(TEXTS) and again.vocab_size == tok.vocab_size
    hyps = [[5, 9, 14, 3], [tok.unk_id, 7]]
    assert again.decode(hyps) == tok.decode(hyps)
    with pytest.raises(RuntimeError):  # a plain SentencePiece reader fails loudly instead of giving wrong ids
        spm.SentencePieceProcessor(model_file=str(tmp_path / "tokenizer.model"))


def test_import_cli_writes_a_model_directory(hf_dir, imported, tmp_path, capsys):
    from compression.__main__ import main
    from compression.runtime import manifest
    from compression.train.checkpoint import load_model

    out = tmp_path / "opus"
    assert main(["import-marian", "--checkpoint", str(hf_dir), "--out", str(out)]) == 0
    assert manifest.verify(out)["origin"]["format"] == "marian"
    model, tok = load_model(out)
    hyps = TorchTranslator(model, tok).translate(TEXTS[:3], GREEDY)
    assert hyps == TorchTranslator(imported[0], imported[1]).translate(TEXTS[:3], GREEDY)
    assert main(["import-marian", "--checkpoint", str(hf_dir), "--out", str(out)]) == 2  # not over a model
    assert "--force" in capsys.readouterr().err


def test_old_style_checkpoint_imports_the_same(hf_dir, hf_pair, imported, tmp_path):
    """pytorch_model.bin with every tied copy and the stored sinusoids, as older opus-mt uploads have."""
    import shutil

    hf, _ = hf_pair
    for f in hf_dir.iterdir():
        if f.name != "model.safetensors":
            shutil.copy(f, tmp_path / f.name)
    state = hf.state_dict()
    assert {"lm_head.weight", "model.encoder.embed_positions.weight", "model.decoder.embed_tokens.weight"} <= set(state)
    torch.save(state, tmp_path / "pytorch_model.bin")
    model, _, _ = import_checkpoint(read_checkpoint(tmp_path))
    for k, v in imported[0].state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k


def _edit_config(**changes):
    return lambda c: c.config.update(changes)


def _edit_weights(**changes):
    return lambda c: c.weights.update(changes)


REFUSALS = {
    "activation_function": _edit_config(activation_function="gelu_new"),
    "normalize_before": _edit_config(normalize_before=True),
    "normalize_embedding": _edit_config(normalize_embedding=True),
    "static_position_embeddings": _edit_config(static_position_embeddings=False),
    "add_bias_logits": _edit_config(add_bias_logits=True),
    "add_final_layer_norm": _edit_config(add_final_layer_norm=True),
    "share_encoder_decoder_embeddings": _edit_config(share_encoder_decoder_embeddings=False),
    "decoder_attention_heads": _edit_config(decoder_attention_heads=2),
    "model_type": _edit_config(model_type="bart"),
    "separate_vocabs": lambda c: setattr(c, "has_target_vocab", True),
    "bad_words_ids": lambda c: c.generation.update(bad_words_ids=[[5, 6]]),
    "layernorm_embedding": _edit_weights(**{"model.encoder.layernorm_embedding.weight": torch.ones(32)}),
    "tie_word_embeddings": lambda c: c.weights.update({"lm_head.weight": torch.randn_like(c.weights["model.shared.weight"])}),
    "learned positions": _edit_weights(**{"model.decoder.embed_positions.weight": torch.randn(128, 32)}),
}


@pytest.mark.parametrize("option", REFUSALS)
def test_unsupported_configurations_are_refused_by_name(hf_dir, option):
    ckpt = read_checkpoint(hf_dir)
    REFUSALS[option](ckpt)
    with pytest.raises(UnsupportedMarian, match=option):
        import_checkpoint(ckpt)


def test_every_problem_is_reported_at_once(hf_dir):
    ckpt = read_checkpoint(hf_dir)
    ckpt.config.update(activation_function="tanh", normalize_before=True)
    with pytest.raises(UnsupportedMarian) as e:
        import_checkpoint(ckpt)
    assert len(e.value.problems) == 2 and "tanh" in str(e.value) and "normalize_before" in str(e.value)


# -- export ----------------------------------------------------------------------------------------
def test_import_export_round_trip(imported, hf_dir, hf_pair, tmp_path):
    """Imported then exported: transformers loads the same weights, tokenizer and generation."""
    from safetensors.torch import load_file

    model, tok, _ = imported
    hf, _ = hf_pair
    record = export_marian(model, tok, tmp_path)
    assert record["ctranslate2_exact"]  # Marian's pad row is zero: CTranslate2 starts from zeros too
    before, after = load_file(str(hf_dir / "model.safetensors")), load_file(str(tmp_path / "model.safetensors"))
    pad = model.cfg.pad_id
    assert set(before) == set(after)
    for k in before:
        if k != "final_logits_bias":
            assert torch.equal(before[k], after[k]), k
    assert torch.equal(before["final_logits_bias"][0, :pad], after["final_logits_bias"][0, :pad])
    again = transformers.MarianMTModel.from_pretrained(tmp_path).eval()
    ids = tok.encode(TEXTS)
    assert hf_greedy(again, ids, pad, 0, GREEDY) == hf_greedy(hf, ids, pad, 0, GREEDY)


def _ct2_greedy(directory: Path, out: Path, tok, texts: list[str]) -> list[list[str]]:
    import ctranslate2
    from ctranslate2.converters import TransformersConverter

    TransformersConverter(str(directory)).convert(str(out), quantization="float32", force=True)
    translator = ctranslate2.Translator(str(out), device="cpu", compute_type="float32", intra_threads=1)
    results = translator.translate_batch([tok.pieces(t) + [tok.id_to_piece(tok.eos_id)] for t in texts],
                                         beam_size=1, max_decoding_length=GREEDY.max_len)
    return [r.hypotheses[0] for r in results]


def test_ctranslate2_translates_an_exported_import_identically(imported, tmp_path):
    model, tok, _ = imported
    export_marian(model, tok, tmp_path / "hf")
    texts = TEXTS[:4]  # CTranslate2 has no language-code handling of its own
    ids = tok.encode(texts)
    cfg = SearchConfig(beam=1, max_len=30, max_len_a=0, max_len_b=30)  # one limit, as max_decoding_length
    ours = TorchTranslator(model, tok).translate_ids(ids, cfg)
    assert _ct2_greedy(tmp_path / "hf", tmp_path / "ct2", tok, texts) == [[tok.id_to_piece(i) for i in h] for h in ours]


@pytest.mark.slow
def test_shipped_model_exports_to_transformers_and_ctranslate2(tmp_path):
    from compression.train.checkpoint import load_model
    from compression.train.data import load_split

    model, tok = load_model()
    record = export_marian(model, tok, tmp_path / "hf")
    hf = transformers.MarianMTModel.from_pretrained(tmp_path / "hf").eval()
    htok = transformers.MarianTokenizer.from_pretrained(tmp_path / "hf")
    texts = [en for en, _ in load_split("test_2016_flickr")[:8]]
    ids = tok.encode(texts)
    new = lambda i: i - 1 if i > model.cfg.pad_id else model.cfg.vocab_size - 1  # noqa: E731 (pad moves last)
    assert htok(texts)["input_ids"] == [[new(i) for i in x] for x in ids]
    ours = TorchTranslator(model, tok).translate_ids(ids, GREEDY)
    theirs = hf_greedy(hf, [[new(i) for i in x] for x in ids], new(model.cfg.pad_id), new(model.cfg.eos_id), GREEDY)
    assert theirs == [[new(i) for i in h] for h in ours]
    # logits on our hypotheses: ours with the vocabulary in export order against transformers'
    order = [i for i in range(model.cfg.vocab_size) if i != model.cfg.pad_id] + [model.cfg.pad_id]
    src = torch.from_numpy(pad_batch(ids, model.cfg.pad_id))
    tgt = torch.from_numpy(pad_batch([[model.cfg.decoder_start_id] + h for h in ours], model.cfg.pad_id))
    with torch.no_grad():
        a = model(src, tgt)[..., order]
        b = hf(input_ids=src.clone().apply_(new), attention_mask=(src != model.cfg.pad_id).long(),
               decoder_input_ids=tgt.clone().apply_(new)).logits
    valid = torch.zeros(tgt.shape, dtype=torch.bool)
    for i, h in enumerate(ours):
        valid[i, : len(h) + 1] = True
    assert (a[valid] - b[valid]).abs().max() < 1e-4
    # CTranslate2 starts from a zero embedding, ours from the trained pad row: the record says so, and
    # with that row zeroed (the only difference) CTranslate2 translates token-identically.
    assert not record["ctranslate2_exact"]
    with torch.no_grad():
        model.shared.weight[model.cfg.pad_id].zero_()
    export_marian(model, tok, tmp_path / "hf0")
    cfg = SearchConfig(beam=1, max_len=GREEDY.max_len, max_len_a=0, max_len_b=GREEDY.max_len)
    ours0 = TorchTranslator(model, tok).translate_ids(ids, cfg)
    ct2 = _ct2_greedy(tmp_path / "hf0", tmp_path / "ct2", tok, texts)
    assert ct2 == [[tok.id_to_piece(i) for i in h] for h in ours0]


def test_export_refuses_what_marian_cannot_compute(tiny_tokenizer, tmp_path):
    from compression.train.model import ModelConfig, Transformer

    cfg = ModelConfig(vocab_size=tiny_tokenizer.vocab_size, d_model=16, n_heads=2, ffn_dim=32, encoder_layers=1,
                      decoder_layers=1, normalize_before=True)
    with pytest.raises(ValueError, match="normalize_before"):
        export_marian(Transformer(cfg), tiny_tokenizer, tmp_path)


# -- the rest of the pipeline on an imported model ---------------------------------------------------
METHODS = {  # post-training configs of every method (the retraining loop is the same for any base model)
    "kmeans": {"type": "kmeans", "bits": 4, "lloyd_iters": 5},
    "binarize": {"type": "binarize", "mode": "two-centroid", "lloyd_iters": 5},
    "prune": {"type": "prune", "sparsity": 0.5},
    "deep": {"type": "deep", "sparsity": 0.5, "bits": 4},
    "fp16": {"type": "fp16"},
    "int8": {"type": "int8"},
}


def test_imported_model_compresses_exports_to_onnx_and_is_served(hf_dir, imported, tmp_path):
    """import-marian -> compress (every method, post-training) -> ONNX export -> service, token-identical
    between PyTorch and ONNX Runtime at every stage."""
    from compression.__main__ import main
    from compression.compress.variants import load_variant
    from compression.export.writer import ExportConfig, export_directory
    from compression.runtime.sessions import SessionFactory
    from compression.runtime.translator import load_translator
    from tests.service_helpers import make_app, running

    model, tok, _ = imported
    base = tmp_path / "opus"
    assert main(["import-marian", "--checkpoint", str(hf_dir), "--out", str(base), "--name", "opus-tiny"]) == 0
    root, variants = tmp_path / "onnx", tmp_path / "variants"
    config = tmp_path / "opus-tiny-kmeans.toml"  # one through the CLI, as a user would
    config.write_text('name = "opus-tiny-kmeans"\n[method]\ntype = "kmeans"\nbits = 4\nlloyd_iters = 5\n')
    assert main(["compress", "--config", str(config), "--base", str(base), "--out", str(variants / "opus-tiny-kmeans"),
                 "--device", "cpu", "--no-eval"]) == 0
    assert main(["export", "--model", str(base), "--variants-root", str(variants), "--out", str(root),
                 "--variant", "opus-tiny", "--variant", "opus-tiny-kmeans"]) == 0
    ids = tok.encode(TEXTS)
    cfgs = [SearchConfig(beam=1, max_len=20), SearchConfig(beam=3, max_len=20)]
    torch_base = TorchTranslator(model, tok)
    for cfg in cfgs:
        assert load_translator(root, variant="opus-tiny", sessions=SessionFactory(threads=1)).translate_ids(ids, cfg) == torch_base.translate_ids(ids, cfg)
    from compression.compress.pipeline import VariantConfig, compress
    from compression.compress.variants import write_variant

    for method, spec in METHODS.items():
        name = f"opus-tiny-{method}"
        if method != "kmeans":
            vcfg = VariantConfig(name=name, base=str(base), method=spec)
            write_variant(variants / name, compress(model, vcfg, tok), vcfg, base)
            precision = {"fp16": "fp16", "int8": "int8"}.get(method, "fp32")
            # graph files decode the exact weights (the default stored form computes in int8 on the CPU)
            export_directory(variants / name, root / name, ExportConfig(precision=precision, stored=False), base_dir=base)
        vmodel, vtok, meta = load_variant(variants / name)
        assert meta["variant"]["base"]["name"] == "opus-tiny" and vtok.vocab is not None
        onnx = load_translator(root, variant=name, sessions=SessionFactory(threads=1))
        if method in ("fp16", "int8"):  # ONNX computes in fp16 / dynamic int8: it runs, but is not the same sum
            assert all(onnx.translate_ids(ids, cfgs[0]))
            continue
        for cfg in cfgs:
            assert onnx.translate_ids(ids, cfg) == TorchTranslator(vmodel, vtok).translate_ids(ids, cfg), (name, cfg)
    with running(make_app(root)) as client:
        for name, reference in (("opus-tiny", torch_base),
                                ("opus-tiny-kmeans", TorchTranslator(*load_variant(variants / "opus-tiny-kmeans")[:2]))):
            r = client.post(f"/translate?variant={name}", json={"texts": TEXTS[:3], "max_len": 20})
            assert r.status_code == 200, r.text
            assert r.json()["translations"] == reference.translate(TEXTS[:3], SearchConfig(max_len=20)), name
    # a compressed variant goes back to transformers too (its dequantised weights): same greedy output
    assert main(["export-marian", "--model", str(variants / "opus-tiny-kmeans"), "--out", str(tmp_path / "hf-kmeans")]) == 0
    vmodel, vtok, _ = load_variant(variants / "opus-tiny-kmeans")
    hf_kmeans = transformers.MarianMTModel.from_pretrained(tmp_path / "hf-kmeans").eval()
    c = vmodel.cfg
    assert hf_greedy(hf_kmeans, ids, c.pad_id, c.eos_id, GREEDY) == TorchTranslator(vmodel, vtok).translate_ids(ids, GREEDY)

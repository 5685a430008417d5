import unicodedata

from compression.runtime.tokenizer import EOS_ID, PAD_ID, UNK_ID, Tokenizer
from tests.conftest import PAIRS


def test_round_trip(tiny_tokenizer):
    texts = [s for p in PAIRS for s in p]
    ids = tiny_tokenizer.encode(texts)
    assert all(x[-1] == EOS_ID and PAD_ID not in x for x in ids)
    assert tiny_tokenizer.decode(ids) == texts


def test_special_ids(tiny_tokenizer):
    assert (tiny_tokenizer.pad_id, tiny_tokenizer.eos_id, tiny_tokenizer.unk_id) == (PAD_ID, EOS_ID, UNK_ID)


def test_save_load(tiny_tokenizer, tmp_path):
    tiny_tokenizer.save(tmp_path / "t.model")
    again = Tokenizer(tmp_path / "t.model")
    assert again.encode(["Ein Hund."]) == tiny_tokenizer.encode(["Ein Hund."])


def test_shipped_tokenizer_round_trip():
    from compression.train.checkpoint import DEFAULT_MODEL
    from compression.train.data import load_split

    tok = Tokenizer(DEFAULT_MODEL / "tokenizer.model")
    assert tok.vocab_size == 8000
    pairs = load_split("val")[:200]
    texts = [s for p in pairs for s in p]
    # SentencePiece applies NFKC and collapses whitespace (a no-break space becomes a space)
    expected = [" ".join(unicodedata.normalize("NFKC", t).split()) for t in texts]
    assert tok.decode(tok.encode(texts)) == expected


def test_short_and_long_lists_encode_and_decode_alike(tiny_tokenizer):
    """Below BATCH_CALL_MIN texts are encoded one call each (SentencePiece's list call starts a thread pool that
    costs 20x a sentence); from it on, in one list call. Both give the same ids and texts."""
    from compression.runtime import tokenizer as tokenizer_module

    texts = [en for en, _ in PAIRS] * (tokenizer_module.BATCH_CALL_MIN // len(PAIRS) + 1)
    assert len(texts) >= tokenizer_module.BATCH_CALL_MIN
    many = tiny_tokenizer.encode(texts)
    few = [tiny_tokenizer.encode([t])[0] for t in texts]
    assert many == few
    assert tiny_tokenizer.decode(many) == [tiny_tokenizer.decode([x])[0] for x in many]

"""A joint SentencePiece vocabulary for source and target (no torch: the service uses it too).

Two kinds of tokenizer file, told apart by their first byte:

- a plain SentencePiece model (tzip's own models): ids are the SentencePiece ids, pad=0, eos=1, unk=2;
- a Marian bundle (models imported from Hugging Face MarianMT, see compression/interop/marian_import.py): a JSON file
  holding the source and target SentencePiece models and Marian's ``vocab.json``. Pieces come from the
  source model, ids from the vocabulary (a piece it lacks becomes unk), and output ids are turned back
  into pieces and joined by the target model, exactly as ``transformers.MarianTokenizer`` does.
  One file, so that copying ``tokenizer.model`` alone can never drop the id mapping, and a tool that
  reads it as a plain SentencePiece model fails loudly instead of producing wrong ids.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import threading
import weakref
from pathlib import Path

import sentencepiece as spm

PAD_ID, EOS_ID, UNK_ID = 0, 1, 2  # Marian's convention: decoding starts from the pad token
BUNDLE_FORMAT = "tzip-marian-tokenizer"
SPIECE_UNDERLINE = "\u2581"


class MarianVocab:
    """Marian's piece -> id table with its special pieces (the ids a MarianMT model was trained on)."""

    def __init__(self, pieces: dict[str, int], pad: str = "<pad>", eos: str = "</s>", unk: str = "<unk>"):
        missing = [name for name in (pad, eos, unk) if name not in pieces]
        if missing:
            raise ValueError(f"the vocabulary lacks the special pieces {missing}; pass their names (pad=, eos=, unk=)")
        if len(set(pieces.values())) != len(pieces) or min(pieces.values()) < 0:
            raise ValueError("the vocabulary maps two pieces to one id, or has a negative id; fix vocab.json")
        self.pieces = dict(pieces)
        self.by_id = {i: piece for piece, i in pieces.items()}
        self.special = {"pad": pad, "eos": eos, "unk": unk}
        self.pad_id, self.eos_id, self.unk_id = pieces[pad], pieces[eos], pieces[unk]

    @property
    def size(self) -> int:
        return max(self.pieces.values()) + 1


def split_language_code(text: str) -> tuple[list[str], str]:
    """A leading ``>>de<<`` is one token of multilingual opus-mt models (as MarianTokenizer does)."""
    if text.startswith(">>") and (end := text.find("<<")) != -1:
        return [text[: end + 2]], text[end + 2 :]
    return [], text


# SentencePiece's list calls start a thread pool: 120 us for one sentence against 6 us for a plain call, 160 against
# 45 for eight; from about 64 sentences the pool wins (measured on this project's 8k model, 2 cores)
BATCH_CALL_MIN = 64

class Tokenizer:
    def __init__(
        self,
        model_file: Path | str | None = None,
        model_proto: bytes | None = None,
        vocab: MarianVocab | None = None,
        target_proto: bytes | None = None,
    ):
        """``model_file``/``model_proto``: a SentencePiece model or a Marian bundle (see the module doc).
        ``vocab`` and ``target_proto`` build a Marian tokenizer from its parts (model_proto = source model)."""
        if model_proto is None:
            if model_file is None or not Path(model_file).exists():
                raise FileNotFoundError(f"SentencePiece model {model_file} not found; train one with train_tokenizer()")
            model_proto = Path(model_file).read_bytes()
        if model_proto[:1] == b"{":
            if vocab is not None or target_proto is not None:
                raise ValueError("a Marian bundle already holds its vocabulary and target model; pass it alone")
            model_proto, vocab, target_proto = _read_bundle(model_proto)
        elif target_proto is not None and vocab is None:
            raise ValueError("a target SentencePiece model needs a Marian vocabulary (vocab=) to map its pieces")
        self.proto = model_proto  # the source SentencePiece model
        self.sp = spm.SentencePieceProcessor(model_proto=model_proto)
        self.vocab = vocab
        self.target_proto = target_proto if target_proto is not None else model_proto
        self.target_sp = self.sp if target_proto is None else spm.SentencePieceProcessor(model_proto=target_proto)
        if vocab is None:
            self.pad_id, self.eos_id, self.unk_id = self.sp.pad_id(), self.sp.eos_id(), self.sp.unk_id()
        else:
            self.pad_id, self.eos_id, self.unk_id = vocab.pad_id, vocab.eos_id, vocab.unk_id

    @property
    def vocab_size(self) -> int:
        return self.sp.get_piece_size() if self.vocab is None else self.vocab.size

    def encode(self, texts: list[str], add_eos: bool = True) -> list[list[int]]:
        if self.vocab is not None:
            ids = [self._marian_ids(t) for t in texts]
        elif len(texts) < BATCH_CALL_MIN:
            ids = [self.sp.encode(t) for t in texts]
        else:
            ids = self.sp.encode(texts)
        return [x + [self.eos_id] for x in ids] if add_eos else ids

    def decode(self, ids: list[list[int]]) -> list[str]:
        if self.vocab is not None:
            return [self._marian_text(x) for x in ids]
        special = {self.pad_id, self.eos_id}
        kept = [[i for i in x if i not in special] for x in ids]
        return [self.sp.decode(x) for x in kept] if len(kept) < BATCH_CALL_MIN else self.sp.decode(kept)

    def pieces(self, text: str) -> list[str]:
        if self.vocab is not None:
            code, text = split_language_code(text)
            return code + self.sp.encode(text, out_type=str)
        return self.sp.encode(text, out_type=str)

    def id_to_piece(self, i: int) -> str:
        if self.vocab is not None:
            return self.vocab.by_id.get(i, self.vocab.special["unk"])
        return self.sp.id_to_piece(i)

    def save(self, path: Path | str) -> None:
        Path(path).write_bytes(self.proto if self.vocab is None else self._bundle())

    # -- Marian vocabulary ----------------------------------------------------------------------
    def _marian_ids(self, text: str) -> list[int]:
        assert self.vocab is not None
        pieces, unk = self.vocab.pieces, self.unk_id
        return [pieces.get(p, unk) for p in self.pieces(text)]

    def _marian_text(self, ids: list[int]) -> str:
        """As MarianTokenizer.decode(skip_special_tokens=True): specials dropped, target model joins."""
        assert self.vocab is not None
        special = {self.pad_id, self.eos_id, self.unk_id}
        pieces = [self.id_to_piece(i) for i in ids if i not in special]
        # decode_pieces leaves pieces the target model lacks untouched, underline included
        return self.target_sp.decode_pieces(pieces).replace(SPIECE_UNDERLINE, " ").strip()

    def _bundle(self) -> bytes:
        assert self.vocab is not None
        bundle = {
            "format": BUNDLE_FORMAT,
            "version": 1,
            "special": self.vocab.special,
            "vocab": self.vocab.pieces,
            "source_spm": base64.b64encode(self.proto).decode("ascii"),
            "target_spm": base64.b64encode(self.target_proto).decode("ascii"),
        }
        return json.dumps(bundle, ensure_ascii=False).encode("utf-8")


_SHARED: weakref.WeakValueDictionary[str, Tokenizer] = weakref.WeakValueDictionary()
_SHARED_LOCK = threading.Lock()


def shared_tokenizer(model_file: Path | str) -> Tokenizer:
    """The ``Tokenizer`` of a file, one per distinct content (sha256) in the process while any user holds it:
    variants that ship the same tokenizer (every compressed variant of one base) load SentencePiece once,
    so loading a second variant does not add another copy of it to the resident memory."""
    path = Path(model_file)
    if not path.exists():
        raise FileNotFoundError(f"SentencePiece model {model_file} not found; train one with train_tokenizer()")
    raw = path.read_bytes()
    key = hashlib.sha256(raw).hexdigest()
    with _SHARED_LOCK:
        tok = _SHARED.get(key)
        if tok is None:
            tok = Tokenizer(model_proto=raw)
            _SHARED[key] = tok
        return tok


def _read_bundle(raw: bytes) -> tuple[bytes, MarianVocab, bytes]:
    try:
        bundle = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"tokenizer file is neither a SentencePiece model nor a valid Marian bundle: {e}") from e
    if bundle.get("format") != BUNDLE_FORMAT or bundle.get("version") != 1:
        raise ValueError(f"unknown tokenizer bundle format {bundle.get('format')!r} v{bundle.get('version')}; "
                         f"this tzip reads {BUNDLE_FORMAT!r} v1")
    vocab = MarianVocab(bundle["vocab"], **bundle["special"])
    return base64.b64decode(bundle["source_spm"]), vocab, base64.b64decode(bundle["target_spm"])


def train_tokenizer(sentences: list[str], vocab_size: int, model_type: str = "unigram") -> Tokenizer:
    """Train in memory on the given sentences (source and target together for a joint vocabulary)."""
    out = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences),
        model_writer=out,
        vocab_size=vocab_size,
        model_type=model_type,
        character_coverage=1.0,
        pad_id=PAD_ID,
        eos_id=EOS_ID,
        unk_id=UNK_ID,
        bos_id=-1,
        num_threads=2,
        minloglevel=2,
        hard_vocab_limit=False,
    )
    return Tokenizer(model_proto=out.getvalue())

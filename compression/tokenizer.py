"""A joint SentencePiece vocabulary for source and target (no torch: the service uses it too)."""

from __future__ import annotations

import io
from pathlib import Path

import sentencepiece as spm

PAD_ID, EOS_ID, UNK_ID = 0, 1, 2  # Marian's convention: decoding starts from the pad token


class Tokenizer:
    def __init__(self, model_file: Path | str | None = None, model_proto: bytes | None = None):
        if model_proto is None:
            if model_file is None or not Path(model_file).exists():
                raise FileNotFoundError(f"SentencePiece model {model_file} not found; train one with train_tokenizer()")
            model_proto = Path(model_file).read_bytes()
        self.proto = model_proto
        self.sp = spm.SentencePieceProcessor(model_proto=model_proto)
        self.pad_id, self.eos_id, self.unk_id = self.sp.pad_id(), self.sp.eos_id(), self.sp.unk_id()

    @property
    def vocab_size(self) -> int:
        return self.sp.get_piece_size()

    def encode(self, texts: list[str], add_eos: bool = True) -> list[list[int]]:
        ids = self.sp.encode(texts)
        return [x + [self.eos_id] for x in ids] if add_eos else ids

    def decode(self, ids: list[list[int]]) -> list[str]:
        special = {self.pad_id, self.eos_id}
        return self.sp.decode([[i for i in x if i not in special] for x in ids])

    def pieces(self, text: str) -> list[str]:
        return self.sp.encode(text, out_type=str)

    def id_to_piece(self, i: int) -> str:
        return self.sp.id_to_piece(i)

    def save(self, path: Path | str) -> None:
        Path(path).write_bytes(self.proto)


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

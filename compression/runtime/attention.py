"""Attention maps of an exported variant through ONNX Runtime (no torch: the service calls this).

Reads ``attention.onnx`` of an export (``compression/runtime/graphs_attention.py`` wrote it beside the encoder and
decoder, over the same ``weights.bin``), after checking the files it reads against the manifest.
The output tokens come from the caller: the variant's own translation (``OnnxTranslator.translate_ids``)
or a given target sentence, so a map always shows a real pass of the variant's weights.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from compression.runtime import manifest as manifest_lib
from compression.runtime import onnx_format as fmt
from compression.runtime.attention_maps import KINDS, AttentionMaps, Shape, sentence_maps, with_eos
from compression.runtime.catalogue import require_exported
from compression.runtime.sessions import SessionFactory
from compression.runtime.tokenizer import Tokenizer


class NoAttentionGraph(FileNotFoundError):
    """The export predates attention.onnx; the message says how to re-export it."""


class OnnxAttention:
    """An ``AttentionSource`` over an exported variant directory (CPU: one sentence at a time is cheap)."""

    def __init__(self, directory: Path | str, sessions: SessionFactory | None = None):
        directory = require_exported(directory)
        man = manifest_lib.read(directory)
        self.name = str(man.get("name"))
        sessions = sessions or SessionFactory()
        self.spec = fmt.GraphSpec.load(directory)
        if self.spec.storage == "stored":  # no graph file: built from the variant's own weights
            from compression.runtime.memory import memory_attention_model

            manifest_lib.verify(directory)
            self.manifest, self.tokenizer = man, Tokenizer(directory / fmt.TOKENIZER_FILE)
            self.session, self.provider = sessions.session(memory_attention_model(directory, sessions))
            self._check(directory)
            return
        if fmt.ATTENTION_FILE not in man.get("files", {}):
            raise NoAttentionGraph(f"variant {self.name!r} was exported without {fmt.ATTENTION_FILE}; re-export it with "
                                   f"`python -m compression export --variant {self.name}` (or `make export`)")
        # only the files this session reads, each checked before ONNX Runtime opens it
        manifest_lib.verify(directory, [fmt.ATTENTION_FILE, fmt.WEIGHTS_FILE, fmt.SPEC_FILE, fmt.TOKENIZER_FILE])
        self.manifest = man
        self.tokenizer = Tokenizer(directory / fmt.TOKENIZER_FILE)
        self.session, self.provider = sessions.session(directory / fmt.ATTENTION_FILE)
        self._check(directory)

    def _check(self, directory: Path) -> None:
        outputs = {o.name: o.shape for o in self.session.get_outputs()}
        missing = set(fmt.ATTENTION_OUTPUTS) - set(outputs)
        if missing:
            raise ValueError(f"{directory}/{fmt.ATTENTION_FILE} lacks outputs {sorted(missing)}; re-export the variant")
        self.shape = Shape(int(outputs[fmt.ATTENTION_OUTPUTS[0]][0]), self.spec.decoder_layers, self.spec.n_heads)

    def batch(self, src: np.ndarray, tgt_in: np.ndarray) -> dict[str, np.ndarray]:
        feed = dict(zip(fmt.ATTENTION_INPUTS, (np.asarray(src, np.int64), np.asarray(tgt_in, np.int64)), strict=True))
        outs = self.session.run(list(fmt.ATTENTION_OUTPUTS), feed)
        return dict(zip(KINDS, outs, strict=True))

    def piece(self, token_id: int) -> str:
        return self.tokenizer.id_to_piece(token_id)

    def source_ids(self, text: str) -> list[int]:
        return self.tokenizer.encode([text])[0][: self.spec.max_positions]

    def target_ids(self, text: str) -> list[int]:
        """A given translation as output ids (EOS last), cut to what the position table holds."""
        return self.tokenizer.encode([text])[0][: self.spec.max_positions]

    def maps(self, src_ids: list[int], output_ids: list[int]) -> AttentionMaps:
        """Maps of one sentence teacher-forced on ``output_ids`` (EOS appended when missing)."""
        s = self.spec
        y = with_eos(output_ids, s.eos_id)[: s.max_positions]  # the position table bounds the target
        return sentence_maps(self, src_ids, y, self.piece, s.pad_id, s.decoder_start_id)

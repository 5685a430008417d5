"""Attention maps from the PyTorch model (``Attention.last_weights``): the reference the ONNX graph is
tested against, and a backend of ``python -m compression attention`` that reads variants from models/."""

from __future__ import annotations

import numpy as np
import torch

from compression.runtime.attention_maps import AttentionMaps, Shape, sentence_maps, with_eos
from compression.runtime.tokenizer import Tokenizer
from compression.train.model import Transformer


class TorchAttention:
    """An ``AttentionSource`` over a ``Transformer``."""

    def __init__(self, model: Transformer, tokenizer: Tokenizer):
        self.model = model.eval()
        self.tokenizer = tokenizer
        c = model.cfg
        self.shape = Shape(c.encoder_layers, c.decoder_layers, c.n_heads)

    @torch.no_grad()
    def batch(self, src: np.ndarray, tgt_in: np.ndarray) -> dict[str, np.ndarray]:
        m = self.model
        device = next(m.parameters()).device
        m.set_keep_attention(True)
        try:
            m(torch.from_numpy(np.asarray(src, np.int64)).to(device), torch.from_numpy(np.asarray(tgt_in, np.int64)).to(device))
            layers = {"encoder": [x.self_attn for x in m.encoder.layers], "decoder": [x.self_attn for x in m.decoder.layers],
                      "cross": [x.encoder_attn for x in m.decoder.layers]}
            return {kind: torch.stack([a.last_weights for a in mods]).float().cpu().numpy() for kind, mods in layers.items()}
        finally:
            m.set_keep_attention(False)

    def piece(self, token_id: int) -> str:
        return self.tokenizer.id_to_piece(token_id)

    def maps(self, src_ids: list[int], output_ids: list[int]) -> AttentionMaps:
        """Maps of one sentence teacher-forced on ``output_ids`` (EOS appended when missing)."""
        c = self.model.cfg
        y = with_eos(output_ids, c.eos_id)[: c.max_positions]
        return sentence_maps(self, src_ids, y, self.piece, c.pad_id, c.decoder_start_id)

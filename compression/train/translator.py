"""Translate with the PyTorch model: batching by length, then the shared NumPy search."""

from __future__ import annotations

import numpy as np
import torch

from compression.runtime.search import LengthBatchedTranslator, SearchConfig, pad_batch, search_ids
from compression.runtime.tokenizer import Tokenizer
from compression.train.model import Transformer


class TorchStepper:
    """Holds one batch's encoder output and decoder cache; see search.Stepper."""

    def __init__(self, model: Transformer, src: torch.Tensor, expand: int):
        self.model = model
        memory, self.src_mask = model.encode(src)
        if expand > 1:
            memory = memory.repeat_interleave(expand, 0)
            self.src_mask = self.src_mask.repeat_interleave(expand, 0)
        self.cross = model.cross_kv(memory)
        self.past: list[tuple[torch.Tensor, torch.Tensor]] | None = None
        self.device = src.device

    def _logits(self, last: np.ndarray, reorder: np.ndarray | None) -> torch.Tensor:
        if reorder is not None and self.past is not None:
            idx = torch.from_numpy(reorder).to(self.device)
            self.past = [(k.index_select(0, idx), v.index_select(0, idx)) for k, v in self.past]
        tokens = torch.from_numpy(last).to(self.device)[:, None]
        logits, self.past = self.model.decode(tokens, self.cross, self.src_mask, self.past)
        return logits[:, -1].float()  # (N, V)

    def step(self, last: np.ndarray, reorder: np.ndarray | None) -> np.ndarray:
        return self._logits(last, reorder).log_softmax(-1).cpu().numpy()

    def step_argmax(self, last: np.ndarray) -> np.ndarray:
        return self._logits(last, None).argmax(-1).cpu().numpy()

    def step_topk(self, last: np.ndarray, reorder: np.ndarray | None, k: int) -> tuple[np.ndarray, np.ndarray]:
        logp = self._logits(last, reorder).log_softmax(-1)
        scores, ids = logp.topk(min(k, logp.shape[1]), dim=-1)  # on the device: (N, k) crosses to the host
        return scores.cpu().numpy(), ids.cpu().numpy()


class TorchTranslator(LengthBatchedTranslator):
    backend = "torch"

    def __init__(self, model: Transformer, tokenizer: Tokenizer, device: str | torch.device = "cpu"):
        self.model = model.to(device).eval()
        self.tokenizer = tokenizer
        self.device = torch.device(device)
        self.provider = f"torch:{self.device.type}"

    @torch.no_grad()
    def translate_ids(self, src_ids: list[list[int]], cfg: SearchConfig) -> list[list[int]]:
        m = self.model.cfg
        cfg = cfg.capped(m.max_positions)
        src_ids = [s[: m.max_positions] for s in src_ids]
        src = torch.from_numpy(pad_batch(src_ids, m.pad_id)).to(self.device)
        stepper = TorchStepper(self.model, src, cfg.beam)
        return search_ids(stepper, src_ids, cfg, m.decoder_start_id, m.eos_id)

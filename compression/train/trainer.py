"""Training: token-bucketed batches, label smoothing, warm-up + inverse-sqrt schedule, bf16 on CUDA,
model selection on validation BLEU with checkpoint averaging, resumable from ``last.pt``.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
import tomllib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from tqdm import tqdm

from compression.runtime.search import SearchConfig
from compression.runtime.tokenizer import Tokenizer, train_tokenizer
from compression.train.checkpoint import save_model
from compression.train.data import DATA_DIR, load_split
from compression.train.evaluate import bleu_chrf
from compression.train.model import ModelConfig, Transformer
from compression.train.translator import TorchTranslator

log = logging.getLogger("tzip.train")


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: dict = Field(default_factory=dict, description="ModelConfig fields; vocab_size comes from the tokenizer")
    vocab_size: int = Field(8000, ge=100)
    tokenizer_type: str = Field("unigram", pattern="^(unigram|bpe)$")
    seed: int = 1
    max_tokens: int = Field(4096, ge=16, description="target tokens per batch")
    lr: float = Field(7e-4, gt=0)
    warmup_steps: int = Field(1000, ge=1)
    epochs: int = Field(60, ge=1)
    label_smoothing: float = Field(0.1, ge=0, lt=1)
    weight_decay: float = Field(1e-4, ge=0)
    clip_norm: float = Field(1.0, gt=0)
    eval_every: int = Field(2, ge=1, description="epochs between validation BLEU")
    eval_limit: int | None = Field(None, description="validate on the first N val pairs only (tests)")
    average_last: int = Field(5, ge=1, description="average the last N validated checkpoints if it helps")
    amp: bool = True
    max_minutes: float | None = Field(None, gt=0, description="stop early (then select and save) after this long")
    data_dir: str | None = Field(None, description="default: the Multi30k copy in data/multi30k")
    train_limit: int | None = None

    @classmethod
    def load(cls, path: Path | str) -> TrainConfig:
        path = Path(path)
        text = path.read_text()
        data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
        return cls.model_validate(data)


def make_batches(pairs: list[tuple[list[int], list[int]]], max_tokens: int, rng: random.Random) -> list[list[int]]:
    """Group pairs of similar length so that max length x batch size stays under max_tokens."""
    order = sorted(range(len(pairs)), key=lambda i: (len(pairs[i][1]), len(pairs[i][0]), rng.random()))
    batches, cur, longest = [], [], 0
    for i in order:
        n = max(len(pairs[i][0]), len(pairs[i][1]) + 1)
        if cur and max(longest, n) * (len(cur) + 1) > max_tokens:
            batches.append(cur)
            cur, longest = [], 0
        cur.append(i)
        longest = max(longest, n)
    if cur:
        batches.append(cur)
    rng.shuffle(batches)
    return batches


def collate(pairs, idx, cfg: ModelConfig, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """-> src (B, S), decoder input (B, T) starting with decoder_start_id, labels (B, T) ending with EOS."""
    src = [pairs[i][0] for i in idx]
    tgt = [pairs[i][1] for i in idx]  # already ends with EOS
    S, T = max(map(len, src)), max(map(len, tgt))
    s = torch.full((len(idx), S), cfg.pad_id, dtype=torch.long)
    tin = torch.full((len(idx), T), cfg.pad_id, dtype=torch.long)
    tout = torch.full((len(idx), T), -100, dtype=torch.long)
    for b, (x, y) in enumerate(zip(src, tgt, strict=True)):
        s[b, : len(x)] = torch.tensor(x)
        tin[b, 0] = cfg.decoder_start_id
        tin[b, 1 : len(y)] = torch.tensor(y[:-1])
        tout[b, : len(y)] = torch.tensor(y)
    return s.to(device, non_blocking=True), tin.to(device, non_blocking=True), tout.to(device, non_blocking=True)


def lr_at(step: int, cfg: TrainConfig) -> float:
    step = max(step, 1)
    return cfg.lr * min(step / cfg.warmup_steps, math.sqrt(cfg.warmup_steps / step))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def validate(model: Transformer, tok: Tokenizer, val: list[tuple[str, str]], device) -> float:
    translator = TorchTranslator(model, tok, device)
    hyps = translator.translate([s for s, _ in val], SearchConfig(beam=1), batch_size=128)
    model.train()
    return bleu_chrf(hyps, [t for _, t in val])["bleu"]


def average_states(states: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {k: sum(s[k].float() for s in states) / len(states) for k in states[0]}


def train(cfg: TrainConfig, out_dir: Path | str, resume: bool = False, device: str | None = None) -> dict:
    out = Path(out_dir)
    (out / "checkpoints").mkdir(parents=True, exist_ok=True)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    seed_everything(cfg.seed)
    (out / "train_config.json").write_text(cfg.model_dump_json(indent=2) + "\n")

    train_pairs = load_split("train", cfg.data_dir or DATA_DIR)[: cfg.train_limit]
    val = load_split("val", cfg.data_dir or DATA_DIR)[: cfg.eval_limit]
    tok_path = out / "tokenizer.model"
    if tok_path.exists():
        tok = Tokenizer(tok_path)
    else:
        tok = train_tokenizer([s for p in train_pairs for s in p], cfg.vocab_size, cfg.tokenizer_type)
        tok.save(tok_path)
    mcfg = ModelConfig(**{**cfg.model, "vocab_size": tok.vocab_size, "pad_id": tok.pad_id, "eos_id": tok.eos_id,
                          "unk_id": tok.unk_id, "decoder_start_id": tok.pad_id})
    src_ids = tok.encode([s for s, _ in train_pairs])
    tgt_ids = tok.encode([t for _, t in train_pairs])
    pairs = [(s[: mcfg.max_positions], t[: mcfg.max_positions]) for s, t in zip(src_ids, tgt_ids, strict=True)]

    model = Transformer(mcfg).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.98), eps=1e-9, weight_decay=cfg.weight_decay)
    state = {"epoch": 0, "step": 0, "history": [], "best_bleu": -1.0}
    last_path = out / "last.pt"
    if resume and last_path.exists():
        ck = torch.load(last_path, map_location=device, weights_only=False)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        state = ck["state"]
        random.setstate(ck["py_rng"])
        torch.set_rng_state(ck["torch_rng"])
        log.info("resumed from epoch %d step %d", state["epoch"], state["step"])
    use_amp = cfg.amp and device.type == "cuda"
    log.info("model: %d parameters, %s", model.num_parameters(), mcfg)

    rng = random.Random(cfg.seed)
    for _ in range(state["epoch"]):  # keep the batch order of an uninterrupted run
        make_batches(pairs, cfg.max_tokens, rng)
    t0 = time.time()
    for epoch in range(state["epoch"] + 1, cfg.epochs + 1):
        model.train()
        batches = make_batches(pairs, cfg.max_tokens, rng)
        total, count = 0.0, 0
        bar = tqdm(batches, desc=f"epoch {epoch}/{cfg.epochs}", leave=False, mininterval=2)
        for idx in bar:
            src, tin, tout = collate(pairs, idx, mcfg, device)
            state["step"] += 1
            for g in opt.param_groups:
                g["lr"] = lr_at(state["step"], cfg)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                logits = model(src, tin)
            loss = F.cross_entropy(logits.float().view(-1, logits.shape[-1]), tout.view(-1),
                                   ignore_index=-100, label_smoothing=cfg.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_norm)
            opt.step()
            total += loss.item()
            count += 1
            bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
        state["epoch"] = epoch
        entry = {"epoch": epoch, "step": state["step"], "loss": total / count, "minutes": (time.time() - t0) / 60}
        out_of_time = cfg.max_minutes is not None and entry["minutes"] > cfg.max_minutes
        if epoch % cfg.eval_every == 0 or epoch == cfg.epochs or out_of_time:
            entry["val_bleu"] = validate(model, tok, val, device)
            torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, out / "checkpoints" / f"epoch{epoch:04d}.pt")
            if entry["val_bleu"] > state["best_bleu"]:
                state["best_bleu"], state["best_epoch"] = entry["val_bleu"], epoch
        state["history"].append(entry)
        log.info(json.dumps(entry))
        torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "state": state,
                    "py_rng": random.getstate(), "torch_rng": torch.get_rng_state()}, last_path)
        if out_of_time:
            log.info("max_minutes=%s reached after epoch %d; stopping", cfg.max_minutes, epoch)
            break
    return finish(model, tok, state, cfg, out, val, device)


def finish(model, tok, state, cfg: TrainConfig, out: Path, val, device) -> dict:
    """Pick the final weights on validation BLEU: the best checkpoint, or an average of the last N."""
    ckpts = sorted((out / "checkpoints").glob("epoch*.pt"))
    candidates = {f"best (epoch {state['best_epoch']})": torch.load(out / "checkpoints" / f"epoch{state['best_epoch']:04d}.pt")}
    if len(ckpts) >= 2 and cfg.average_last >= 2:
        last = ckpts[-cfg.average_last :]
        candidates[f"average of {len(last)} last"] = average_states([torch.load(p) for p in last])
    scores = {}
    for name, sd in candidates.items():
        model.load_state_dict(sd)
        scores[name] = validate(model, tok, val, device)
    chosen = max(scores, key=scores.get)
    model.load_state_dict(candidates[chosen])
    log.info("validation BLEU of candidates %s; chose %s", scores, chosen)
    summary = {"selection": {"candidates": scores, "chosen": chosen, "metric": "val BLEU, greedy"},
               "history": state["history"]}
    (out / "train_log.json").write_text(json.dumps(summary, indent=2) + "\n")
    save_model(out / "model", model.cpu().float(), tok,
               metrics={"val_bleu_greedy": scores[chosen]}, meta={"train": cfg.model_dump()})
    return summary

"""Evaluation of a split in inference mode (`dendsn train`'s epochs, `dendsn eval`)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch
from omegaconf import DictConfig

from ..runs import checkpoint
from ..runs import distributed as dist
from .build import Parts, build, seed_everything, select_device
from .monitor import Monitor


def predict(parts: Parts, out: torch.Tensor) -> torch.Tensor:
    """[B] the read-out's predictions (`readouts.Readout.predict`; most spikes without a read-out)."""
    return parts.decoder.predict(out) if parts.decoder is not None else out.sum(0).argmax(-1)


def count_correct(parts: Parts, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (predict(parts, out) == y).sum()


def tallies_of(decoder) -> tuple:
    """(the read-out's own per-sample tally, e.g. acc_ordinary of the event network, and its names), or (None, ())."""
    tally = getattr(decoder, "tally", None)
    return tally, (tuple(getattr(decoder, "tally_names", ())) if tally is not None else ())


def evaluate(
    parts: Parts,
    cfg,
    split=None,
    monitor: Optional[Monitor] = None,
    record: bool = False,
    confusion: Optional[torch.Tensor] = None,
    extra: Optional[dict] = None,
) -> tuple[float, float]:
    """(loss, accuracy) on ``split`` (default: the test split) in inference mode. With a ``monitor``, its
    hooks count spikes (and with ``record`` keep what the figures record on the first batch); ``confusion``
    [C, C] (true, predicted) is incremented on the device. ``extra`` receives the read-out's own tallies
    per sample (`tally`, e.g. acc_ordinary of the event network)."""
    model, rule = parts.model, parts.rule
    split = parts.test if split is None else split
    model.eval()
    parts.encoder.eval()
    tally, names = tallies_of(parts.decoder)
    sums = torch.zeros(2 + len(names), device=split.y.device)
    if monitor:
        monitor.start(record)
    with torch.inference_mode():
        for x, y in split.batches(cfg.batch_size, shuffle=False):
            x, y = dist.part(x, y)  # under torchrun: this rank's part of the batch
            if y.shape[0] == 0:
                continue
            model.reset()
            loss, out = rule.eval_batch(model, parts.encoder(x, cfg.T, time_major=parts.info.time_major), y)
            sums[0] += loss.float() * y.shape[0]
            sums[1] += count_correct(parts, out, y)
            if names:
                sums[2:] += tally(out, y)
            if monitor is not None:
                monitor.stop_recording()  # the figures' records of the first batch only
            if confusion is not None:
                C = confusion.shape[0]
                pred = predict(parts, out)
                confusion += torch.bincount(y * C + pred, minlength=C * C).reshape(C, C).to(confusion.device)
    if confusion is not None and dist.active():
        confusion.copy_(dist.reduce_sum(confusion))
    loss_sum, correct, *tallies = dist.reduce_sum(sums).tolist()
    n = len(split)
    if extra is not None:
        extra.update({k: v / n for k, v in zip(names, tallies)})
    return loss_sum / n, correct / n


def evaluate_checkpoint(cfg: DictConfig, path: Path, ck: dict) -> dict:
    """Build the model of ``cfg``, load ``ck``'s weights, and evaluate on the test split."""
    device = select_device(cfg.device)
    seed_everything(cfg.seed)
    parts = build(cfg, device)
    checkpoint.load_model_state(parts.model, ck["model"], path, "ckpt")
    loss, acc = evaluate(parts, cfg)
    return {"test_loss": loss, "test_acc": acc, "n_test": len(parts.test), "epoch": ck.get("epoch")}

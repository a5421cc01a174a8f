"""Surrogate-gradient backpropagation through time.

    loss = CE(sum_t out[t], y)                  (or the per-step TET loss, ``per_step_loss``)
    theta <- optimizer(theta, dloss/dtheta)     gradients through the soma's surrogate derivative

The scheduler steps once per batch (cosine over the whole run). With ``autocast`` (CUDA AMP) the
forward runs in reduced precision and a GradScaler guards fp16.
"""

from __future__ import annotations

import contextlib

import torch

from .base import LearningRule, clamp_weights


class BPTT(LearningRule):
    def __init__(self, per_step_loss: bool = False, grad_clip: float = 0.0):
        super().__init__(per_step_loss)
        if grad_clip < 0:
            raise ValueError(f"grad_clip must be >= 0 (got {grad_clip})")
        self.grad_clip = grad_clip
        self.scaler = None

    def train_batch(self, model, x_seq, y, autocast=None):
        if autocast is not None and autocast.dtype == torch.float16 and self.scaler is None:
            self.scaler = torch.amp.GradScaler("cuda")
        with autocast if autocast is not None else contextlib.nullcontext():
            out = model(x_seq)
            loss = self.loss(out.float(), y)
        self.phase("forward")
        self.optimizer.zero_grad(set_to_none=True)
        scaled = loss * self.loss_scale if self.loss_scale != 1.0 else loss  # DDP averages the ranks' gradients
        if self.scaler is not None:
            self.scaler.scale(scaled).backward()
            self.scaler.unscale_(self.optimizer)
        else:
            scaled.backward()
        self.phase("backward")
        if self.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), self.grad_clip)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
        clamp_weights(model)
        self.phase("optimizer")
        return loss.detach(), out.detach()

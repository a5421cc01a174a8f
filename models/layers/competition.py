"""Competition between the neurons of a layer, acting on their synaptic input currents.

A competition module sits between a layer's synapse and its neurons (``network.competition``) and
sees the current of every input compartment. With I_s = sum_k I_s,k the total current of neuron s
(conv: of channel s at one position), per sample and time step:

    LateralInhibition
        I_s,k <- I_s,k - strength * mean_s' I_s',k               subtractive inhibition by the layer
        divisive:   I_s,k <- gain * K_in * (that) / std_s' I_s'   ... and divisive by its spread, so a
                    neuron's total is gain * (I_s - mean I) / std I: it fires when it stands out of the
                    layer, whatever the scale of the weights or the brightness of the input
        adapt > 0:  I_s,k <- I_s,k - theta_s                      adaptive thresholds (homeostasis):
                    in training, theta_s += adapt * T * (w_s - k / S) per batch, w_s the fraction of rows
                    (samples, steps, positions) in which s is a winner, so every neuron wins as often
        k:          only the k neurons with the largest total keep their input, the others get none

    KWinnerTakeAll
        I_s,k <- I_s,k if I_s is among the k largest of the layer, else 0 (shunted)

Layouts are those of `layers.synapses`: linear currents [..., S*K_in] (neuron-major, feature s*K_in+k),
conv currents [..., K_in*C, H, W] (compartment-major, channel k*C+c; competition runs over the C
channels at every position). ndim 3 / 5 is multi-step [T, B, ...], ndim 2 / 4 single-step [B, ...].
Gradients pass through the currents; the winners and theta are constants.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn


def _check_int(name: str, value, minimum: int = 1, allow_none: bool = False):
    if value is None and allow_none:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum} (got {name}={value!r})")
    return value


def _check_float(name: str, value) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not value >= 0:
        raise ValueError(f"{name} must be a number >= 0 (got {name}={value!r})")
    return float(value)


def split_neurons(x: torch.Tensor, k_in: int):
    """Currents -> (view [..., S, K_in] / [..., K_in, C, H, W], the neuron axis, the compartment axis)."""
    if x.dim() in (2, 3):
        return x.unflatten(-1, (-1, k_in)), -2, -1
    if x.dim() in (4, 5):
        return x.unflatten(-3, (k_in, -1)), -3, -4
    raise ValueError(
        f"competition expects linear [.., S*K_in] or conv [.., C, H, W] currents (got shape {tuple(x.shape)})"
    )


def winners(total: torch.Tensor, dim: int, k: int) -> torch.Tensor:
    """0/1 mask of the k largest entries of ``total`` along ``dim`` (shape of ``total``)."""
    if k >= total.shape[dim]:
        return torch.ones_like(total)
    idx = total.detach().topk(k, dim=dim).indices
    return torch.zeros_like(total).scatter_(dim, idx, 1.0)


class LateralInhibition(nn.Module):
    """Subtractive (optionally divisive) inhibition, adaptive thresholds and k-WTA; see the module docstring."""

    def __init__(
        self,
        strength: float = 1.0,
        divisive: bool = False,
        gain: float = 1.0,
        k: Optional[int] = None,
        adapt: float = 0.0,
        n_neurons: Optional[int] = None,
        k_in: int = 1,
    ):
        super().__init__()
        self.strength, self.divisive, self.gain = (
            _check_float("strength", strength),
            bool(divisive),
            _check_float("gain", gain),
        )
        self.k, self.adapt = _check_int("k", k, allow_none=True), _check_float("adapt", adapt)
        self.k_in = _check_int("k_in", k_in)
        if self.adapt and n_neurons is None:
            raise ValueError(
                "adapt > 0 keeps one threshold per neuron: n_neurons is needed (the network builders pass it)"
            )
        n = _check_int("n_neurons", n_neurons, allow_none=True)
        self.register_buffer("theta", torch.zeros(n) if n is not None else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v, dim, cdim = split_neurons(x, self.k_in)
        out = v - self.strength * v.mean(dim, keepdim=True) if self.strength else v
        if self.divisive:
            total = v.sum(cdim, keepdim=True)
            out = out * (self.gain * self.k_in / (total.std(dim, keepdim=True) + 1e-6))
        if self.adapt:
            theta = self.theta.to(out.dtype)
            out = out - (theta.view(-1, 1) if dim == -2 else theta.view(-1, 1, 1))
        if self.k is not None:
            mask = winners(out.sum(cdim, keepdim=True), dim, self.k)
            if self.adapt and self.training:
                self._adapt(mask, dim, multi_step=x.dim() in (3, 5))
            out = out * mask
        return out.reshape(x.shape)

    @torch.no_grad()
    def _adapt(self, mask: torch.Tensor, dim: int, multi_step: bool) -> None:
        """theta_s += adapt * T * (w_s - k / S): w_s = fraction of rows in which neuron s wins."""
        S = mask.shape[dim]
        w = mask.movedim(dim, -1).reshape(-1, S).mean(0)
        steps = mask.shape[0] if multi_step else 1
        self.theta += (self.adapt * steps) * (w - self.k / S).to(self.theta.dtype)

    def extra_repr(self) -> str:
        return (
            f"strength={self.strength}, divisive={self.divisive}, gain={self.gain}, k={self.k}, "
            f"adapt={self.adapt}, k_in={self.k_in}"
        )


class KWinnerTakeAll(nn.Module):
    """Only the k neurons with the largest total input current keep their input; the rest get none."""

    def __init__(self, k: int = 1, n_neurons: Optional[int] = None, k_in: int = 1):
        super().__init__()
        self.k, self.k_in = _check_int("k", k), _check_int("k_in", k_in)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v, dim, cdim = split_neurons(x, self.k_in)
        return (v * winners(v.sum(cdim, keepdim=True), dim, self.k)).reshape(x.shape)

    def extra_repr(self) -> str:
        return f"k={self.k}, k_in={self.k_in}"

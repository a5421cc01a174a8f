"""Optimizers that torch lacks, for `optim=`.

AdaBelief (Zhuang et al. 2020) as optax.adabelief computes it (spikegd trains with it):

    m <- b1 m + (1 - b1) g
    s <- b2 s + (1 - b2) (g - m)^2 + eps_root          (m: the new one)
    p <- p - lr (m / (1 - b1^k)) / (sqrt(s / (1 - b2^k)) + eps)      k: the step, from 1

Adam scales the step by the gradient's size; AdaBelief by how far the gradient is from its running
mean (the "belief"): a steady gradient takes large steps, a noisy one small ones.
"""

from __future__ import annotations

import math

import torch

from dendsn_cli.config.checks import must_be


class AdaBelief(torch.optim.Optimizer):
    def __init__(
        self,
        params,
        lr: float = 1e-3,
        betas=(0.9, 0.999),
        eps: float = 1e-16,
        eps_root: float = 1e-16,
        weight_decay: float = 0.0,
    ):
        betas = tuple(betas)
        if not (isinstance(lr, (int, float)) and lr > 0 and math.isfinite(lr)):
            raise must_be("lr", lr, "a number > 0", named=True)
        if len(betas) != 2 or not all(isinstance(b, (int, float)) and 0.0 <= b < 1.0 for b in betas):
            raise must_be("betas", list(betas), "two numbers in [0, 1)", named=True)
        for key, value in (("eps", eps), ("eps_root", eps_root), ("weight_decay", weight_decay)):
            if not (isinstance(value, (int, float)) and value >= 0):
                raise must_be(key, value, "a number >= 0", named=True)
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, eps_root=eps_root, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                if group["weight_decay"]:
                    g = g.add(p, alpha=group["weight_decay"])
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["m"] = torch.zeros_like(p)
                    state["s"] = torch.zeros_like(p)
                state["step"] += 1
                k, m, s = state["step"], state["m"], state["s"]
                m.mul_(b1).add_(g, alpha=1 - b1)
                s.mul_(b2).addcmul_(g - m, g - m, value=1 - b2).add_(group["eps_root"])
                m_hat = m / (1 - b1**k)
                s_hat = s / (1 - b2**k)
                p.addcdiv_(m_hat, s_hat.sqrt().add_(group["eps"]), value=-group["lr"])
        return loss

"""Reward-modulated (three-factor) STDP: STDP writes an eligibility trace, a reward turns it into dW.

Per sample b and step t, with dW_stdp[t] the STDP update of `stdp.py` for that step:

    e[t] = e[t-1] (1 - 1/tau_e) + dW_stdp[t]                        eligibility, e[-1] = 0
    R_b  = reward_correct if the read-out classifies sample b correctly (argmax of its spike
           counts), else reward_wrong;   r_b = R_b - R_bar              (R_bar = 0 unless baseline_rate)
    dW   = eta * sum_b r_b e_b[T-1]                                     reward at the end of the sample
    R_bar <- R_bar + baseline_rate (mean_b R_b - R_bar)                 running reward baseline

Because e_b[T-1] = sum_t (1 - 1/tau_e)^(T-1-t) dW_stdp_b[t], the whole update is STDP with its
T*B rows weighted by r_b (1 - 1/tau_e)^(T-1-t): the same two matmuls as STDP. The step-by-step path
(`delta_steps`) keeps e_b for every sample instead ([B, O, I] memory).
"""

from __future__ import annotations

import torch

from .plasticity import check_number, check_tau, correlate_per_sample, time_weights, trace_step
from .stdp import STDP


class RSTDP(STDP):
    """Three-factor STDP; see the module docstring. STDP keys as in `STDP`, others: `LocalRule`."""

    def __init__(
        self,
        eta: float = 1.0,
        tau_e: float = 4.0,
        reward_correct: float = 1.0,
        reward_wrong: float = -1.0,
        baseline_rate: float = 0.0,
        **kw,
    ):
        super().__init__(**kw)
        self.eta = check_number("eta", eta, minimum=0.0)
        self.tau_e = check_tau("tau_e", tau_e)
        self.reward_correct = check_number("reward_correct", reward_correct)
        self.reward_wrong = check_number("reward_wrong", reward_wrong)
        self.baseline_rate = check_number("baseline_rate", baseline_rate, minimum=0.0, maximum=1.0)
        self.r_bar = 0.0  # a float, or a 0-dim tensor on the device once it moves
        self._reward_sum, self._reward_n = 0.0, 0  # summed on the device, read once per epoch
        self._r = None

    def rate(self) -> float:
        return self.eta * self.a_plus

    def reward(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """r_b [B] from the read-out's counts out [T, B, C]."""
        pred = self.decoder.predict(out) if self.decoder is not None else out.sum(0).argmax(-1)
        correct = pred == y
        R = torch.where(correct, self.reward_correct, self.reward_wrong).to(torch.float32)
        return R

    @torch.no_grad()
    def learn(self, out, y):
        R = self.reward(out, y)
        self._r = R - self.r_bar
        mean_R = R.mean()  # no float(): no host sync per batch
        self._reward_sum = self._reward_sum + mean_R
        self._reward_n += 1
        super().learn(out, y)
        if self.baseline_rate:
            self.r_bar = self.r_bar + self.baseline_rate * (mean_R - self.r_bar)

    def delta_seq(self, layer, out, y):
        T = out.shape[0]
        w = self._r.unsqueeze(0) * time_weights(1.0 - 1.0 / self.tau_e, T, out.device).unsqueeze(1)  # [T, B]
        return self.eta * self.combine(layer, *self.correlations_seq(layer, row_weight=w)), None

    def delta_steps(self, layer, out, y):
        d = 1.0 - 1.0 / self.tau_e
        x_pre = x_post = e_ltp = e_ltd = None
        for pre, post, inp in zip(layer.steps("pre"), layer.steps("post"), layer.steps("inp")):
            post = self.learning_post(layer, post, inp)
            x_pre = trace_step(x_pre, pre, self.tau_pre)
            x_post = trace_step(x_post, post, self.tau_post)
            g = correlate_per_sample(layer.conn, post, x_pre)  # [B, O, ...] this step's pairs
            e_ltp = g if e_ltp is None else e_ltp * d + g
            g = correlate_per_sample(layer.conn, x_post, pre)
            e_ltd = g if e_ltd is None else e_ltd * d + g
        r = self._r.to(e_ltp.dtype).view(-1, *([1] * (e_ltp.dim() - 1)))
        return self.eta * self.combine(layer, (r * e_ltp).sum(0), (r * e_ltd).sum(0)), None

    def extra_scalars(self) -> dict:
        out = {
            "plasticity/reward": float(self._reward_sum) / max(self._reward_n, 1),
            "plasticity/reward_baseline": float(self.r_bar),
        }
        self._reward_sum, self._reward_n = 0.0, 0
        return out

    def rule_state(self) -> dict:
        return {"r_bar": float(self.r_bar)}

    def load_rule_state(self, sd: dict) -> None:
        self.r_bar = float(sd.get("r_bar", 0.0))

"""The learning-rule interface every option of the `learning` group implements."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch import nn

from ..errors import UserError


def count_loss(out: torch.Tensor, y: torch.Tensor, per_step: bool) -> torch.Tensor:
    """Cross-entropy on read-out spike counts: logits = sum_t out[t]  ([T, B, C] -> [B, C]).

    With ``per_step`` (TET, Deng et al. 2022) the loss is the mean over t of CE(out[t] * T, y), which
    gives every step its own gradient while keeping the count scale.
    """
    T = out.shape[0]
    if per_step:
        return nn.functional.cross_entropy((out * T).flatten(0, 1), y.repeat(T))
    return nn.functional.cross_entropy(out.sum(0), y)


class PhaseClock:
    """``profile=true``: wall time of the phases of a training step, summed over the run.

    `start` before a step, `mark(name)` at the end of each phase (time since the previous mark). On
    CUDA every mark synchronises the device, so a phase is charged with its own kernels; that costs
    time, which is why the clock exists only when the user asks for a profile.
    """

    def __init__(self, device: torch.device):
        self.device, self.times, self._t = device, {}, 0.0

    def _now(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    def start(self) -> None:
        self._t = self._now()

    def mark(self, name: str) -> None:
        now = self._now()
        self.times[name] = self.times.get(name, 0.0) + now - self._t
        self._t = now


@dataclass
class RuleContext:
    """What the training loop gives a rule (`LearningRule.setup`'s ``context``), besides the model:

    decoder          the read-out (`dendsn_cli.readouts.Readout`): its loss and prediction; None: CE on counts
    lr_decay_steps   lr_schedule=exp: steps for the rate to fall by 1/e (None: the whole run)
    clock            profile=true: the `PhaseClock` that `LearningRule.phase` marks
    loss_scale       under torchrun: this rank's share of the global batch x world size, updated by the
                     loop before every `train_batch` (1.0 in one process)
    """

    decoder: object = None
    lr_decay_steps: Optional[float] = None
    clock: Optional[PhaseClock] = None
    loss_scale: float = 1.0


class LearningRule:
    """Base class: holds the optimizer of whatever the rule trains by gradient. What the loop provides
    (read-out, profile clock, torchrun loss scale) comes in one `RuleContext` at `setup`."""

    def __init__(self, per_step_loss: bool = False):
        self.per_step_loss = per_step_loss
        self.context = RuleContext()
        self.optimizer: Optional[torch.optim.Optimizer] = None
        self.scheduler = None
        self._params: list = []
        self.lr_scales: list = []

    @property
    def decoder(self):
        """The read-out's loss and prediction (`readouts`), from the context."""
        return self.context.decoder

    @decoder.setter
    def decoder(self, value) -> None:
        self.context.decoder = value

    @property
    def clock(self) -> Optional[PhaseClock]:
        return self.context.clock

    @property
    def loss_scale(self) -> float:
        return self.context.loss_scale

    def attach(self, context: RuleContext) -> None:
        """Take the loop's ``context`` (the run's builder attaches one with the read-out, so that a rule
        evaluates with it before `setup`; `setup` may bring the training run's own)."""
        self.context = context

    def phase(self, name: str) -> None:
        """End of a phase of `train_batch` (forward, backward, optimizer, plasticity) for the profile."""
        if self.context.clock is not None:
            self.context.clock.mark(name)

    def setup(
        self,
        model: nn.Module,
        optimizer_factory: Callable,
        total_steps: int,
        lr_schedule: str = "none",
        context: Optional[RuleContext] = None,
    ) -> None:
        """Build the optimizer and schedule for ``total_steps`` training steps; ``context`` (kept as
        ``self.context``) carries what the loop provides; without one the rule keeps its own."""
        if context is not None:
            self.attach(context)
        if lr_schedule not in ("none", "cosine", "exp"):
            raise UserError(f"lr_schedule={lr_schedule!r} is not known; use none, cosine or exp")
        self._params = [p for p in self.trainable_parameters(model) if p.requires_grad]
        self._optim_args = (optimizer_factory, max(1, total_steps), lr_schedule)
        self.lr_scales = [1.0] * len(self._params)
        self._build_optimizer()

    def _build_optimizer(self) -> None:
        """The optimizer (one param group per distinct lr scale, each group's lr = optim.lr * scale, the
        scale kept in the group as ``lr_scale``) and its schedule, both fresh."""
        factory, total_steps, lr_schedule = self._optim_args
        by_scale: dict = {}
        for p, scale in zip(self._params, self.lr_scales):
            by_scale.setdefault(scale, []).append(p)
        groups = [{"params": ps, "lr_scale": scale} for scale, ps in by_scale.items()] or self._params
        try:
            self.optimizer = factory(groups)
        except (TypeError, ValueError) as e:
            raise UserError(f"optim: {e}; check the optim.* keys") from None
        for group in self.optimizer.param_groups:
            group["lr"] = group["lr"] * group.get("lr_scale", 1.0)
        self.scheduler = None
        if lr_schedule == "cosine":
            self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=total_steps)
        elif lr_schedule == "exp":  # lr e^(-step / lr_decay_steps): down by 1/e every lr_decay_epochs
            decay = float(self.context.lr_decay_steps or total_steps)
            self.scheduler = torch.optim.lr_scheduler.ExponentialLR(self.optimizer, gamma=math.exp(-1.0 / decay))

    def scale_lr(self, scales: dict) -> None:
        """Multiply the learning rate of each parameter in ``scales`` (parameter -> factor) by its factor;
        called before training (a new optimizer and schedule). `init_rate` uses it so that a layer whose
        weights it scaled by c also takes steps c times larger: for Adam-type optimizers the weights then
        move by the same fraction of their size per step as at the plain initialisation (the equalised
        learning rate of Karras et al. 2018). A rule without an optimizer ignores it."""
        if self.optimizer is None or not self._params:
            return
        self.lr_scales = [float(scales.get(p, 1.0)) for p in self._params]
        self._build_optimizer()

    def trainable_parameters(self, model: nn.Module):
        return model.parameters()

    def readout_options(self) -> dict:
        """Keyword arguments the rule gives its read-out (the event network's `EventFirstSpike`: ``gamma``)."""
        return {}

    def calibration_skip(self) -> list:
        """0-based indices of the spiking layers whose weight scale `init_rate` must not change."""
        return []

    def lr(self) -> float:
        """The base learning rate now (optim.lr under the schedule; layers scaled by `scale_lr` use a multiple)."""
        if not self.optimizer:
            return math.nan
        group = self.optimizer.param_groups[0]
        return group["lr"] / group.get("lr_scale", 1.0)

    def loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The read-out's loss (`readouts.Readout`, the context's ``decoder``); without one, CE on counts."""
        if self.decoder is not None:
            return self.decoder.loss(out, y)
        return count_loss(out, y, self.per_step_loss)

    def train_batch(self, model, x_seq, y, autocast=None):
        raise NotImplementedError

    @torch.no_grad()
    def eval_batch(self, model, x_seq, y):
        out = model(x_seq)
        return self.loss(out, y), out

    def epoch_end(self) -> None:
        """Called once after each training epoch."""

    def epoch_scalars(self) -> dict:
        """Scalars of the epoch just ended (tag -> float), logged after `epoch_end`."""
        return {}

    def epoch_images(self) -> dict:
        """Images of the epoch just ended (tag -> [C, H, W] tensor in [0, 1]), logged after `epoch_end`."""
        return {}

    def state_dict(self) -> dict:
        return {
            "optimizer": self.optimizer.state_dict() if self.optimizer else None,
            "optimizer_class": type(self.optimizer).__name__ if self.optimizer else None,
            "scheduler": self.scheduler.state_dict() if self.scheduler else None,
            "lr_scales": list(self.lr_scales),
        }

    def load_state_dict(self, sd: dict) -> list:
        """Restore the optimizer and schedule of a checkpoint, then apply this run's optim.* settings on
        top (a resume honours ``optim.lr=``, ``optim.weight_decay=``, ...): the learning rate moves to the
        new base rate at the same point of the schedule. Returns the settings that changed, as text."""
        saved_class = sd.get("optimizer_class")
        if self.optimizer is not None and saved_class and saved_class != type(self.optimizer).__name__:
            raise UserError(
                f"the checkpoint was trained with the {saved_class} optimizer and this run's is "
                f"{type(self.optimizer).__name__}: the optimizer cannot change on resume; drop the optim= "
                "override, or start a new run"
            )
        scales = sd.get("lr_scales")
        if self.optimizer is not None and scales and len(scales) == len(self._params) and scales != self.lr_scales:
            self.lr_scales = [float(s) for s in scales]  # the groups the saved optimizer state has
            self._build_optimizer()
        changed = []
        if self.optimizer is not None and sd.get("optimizer") is not None:
            wanted = [{k: v for k, v in g.items() if k != "params"} for g in self.optimizer.param_groups]
            try:
                self.optimizer.load_state_dict(sd["optimizer"])
            except (ValueError, KeyError, TypeError, RuntimeError) as e:
                raise UserError(
                    f"the checkpoint's optimizer state does not fit this run ({e}); the learning rule "
                    "and the optimizer cannot change on resume"
                ) from None
            if self.scheduler is not None and sd.get("scheduler") is not None:
                self.scheduler.load_state_dict(sd["scheduler"])
            changed = self._apply_settings(wanted)
        elif self.scheduler is not None and sd.get("scheduler") is not None:
            self.scheduler.load_state_dict(sd["scheduler"])
        return changed

    def _apply_settings(self, wanted: list) -> list:
        """Put this run's optimizer settings (``wanted``, one dict per param group, lr already scaled)
        over the restored ones; with a schedule, scale its base rate and the current rate alike."""
        changed = []
        for i, (group, new) in enumerate(zip(self.optimizer.param_groups, wanted)):
            for k, v in new.items():
                if k in ("lr", "initial_lr", "lr_scale") or group.get(k) == v:
                    continue
                if i == 0:
                    changed.append(f"optim.{k} {group.get(k)} -> {v}")
                group[k] = v
            base = self.scheduler.base_lrs[i] if self.scheduler is not None else group["lr"]
            if new["lr"] != base:
                if i == 0:
                    scale = group.get("lr_scale", 1.0)
                    changed.append(f"optim.lr {base / scale:g} -> {new['lr'] / scale:g}")
                if self.scheduler is not None:
                    group["lr"] = group["lr"] * (new["lr"] / base) if base else new["lr"]
                    group["initial_lr"] = self.scheduler.base_lrs[i] = new["lr"]
                    self.scheduler._last_lr = [g["lr"] for g in self.optimizer.param_groups]
                else:
                    group["lr"] = new["lr"]
        return changed


def clamp_weights(model: nn.Module) -> None:
    """Project every constrained synapse back onto its constraints (modules that define ``clamp_``):
    bounds [wmin, wmax], E/I signs (Dale's law), the zeros of a fixed mask (`dendsn.synapses`)."""
    for m in model.modules():
        clamp = getattr(m, "clamp_", None)
        if callable(clamp):
            clamp()


def masked_update(module: nn.Module, dW: torch.Tensor) -> torch.Tensor:
    """dW with the entries of a masked synapse's absent connections set to 0 (``module.mask``), so a local
    rule never moves them, not even between its update and the synapse's ``clamp_``."""
    mask = getattr(module, "mask", None)
    return dW if mask is None else dW * mask.to(dW.dtype)


def inhibitory_units(module: nn.Module) -> tuple:
    """(number of inhibitory, of excitatory) presynaptic units of a synapse with E/I signs (``module.sign``),
    or (0, 0) without signs."""
    sign = getattr(module, "sign", None)
    if sign is None:
        return 0, 0
    n_inh = int((sign < 0).sum())
    return n_inh, sign.numel() - n_inh

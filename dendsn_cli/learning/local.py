"""The machinery every local plasticity rule shares: layers, hooks, bounds, competition, read-out.

A network is read as a chain of *plastic layers*: a synapse (nn.Linear, or a Conv2d, possibly in a
`TimeDistributed`) followed, perhaps through a competition module, by a spiking neuron. The last
layer is the read-out; the others are hidden layers (``layer1``, ``layer2``, ... as in TensorBoard).

One training batch of a local rule (``LocalRule.train_batch``):

    1. forward pass, forward hooks on every learning layer recording
           pre   the synapse's input   [T, B, I...]      cur   the synapse's output   [T, B, F...]
           inp   the neuron's input    [T, B, F...]      post  the neuron's spikes    [T, B, S...]
       (+ what a rule's `observe` adds; neurons in step_mode 's': the pass runs step by step and
       the hooks record every step)
    2. read-out: ``readout=gradient``  CE(sum_t out[t], y) backpropagated into the read-out only
                 (nothing below requires grad), with the run's optimizer and schedule;
                 ``delta``  dW = readout_eta (onehot(y) - r_out)^T @ r_pre  (rates over T, summed over B);
                 ``none``   frozen; a rule may add its own mode (``dpp``)
    3. every locally learning layer: W <- W + M * dW of the rule (`delta_seq` on [T, B, ...] tensors,
       vectorised over T; `delta_steps` the same equations step by step, for single-step networks; M the
       synapse's fixed mask, 1 without one); hidden layers then W <- clamp(W, wmin, wmax), the synapse's
       own constraints (`clamp_`: its bounds, E/I signs, mask), rows rescaled to norm ``normalize``, both
       clamps again; the read-out gets the synapse's own constraints after every update (gradient too)
    4. ``homeostasis`` (adaptive thresholds through the synapse bias, b = -theta):
           b_s <- b_s - homeostasis * sigma * (r_s - target_rate)
       r_s the learning spikes of neuron s per step, target_rate null = the layer's mean (equal use),
       sigma the spread (std over the layer's neurons) of W x, so homeostasis is scale-free

Competition for unsupervised rules: ``wta`` (only the k neurons with the largest input current per
sample and step learn; conv: per position, over the channels), ``homeostasis`` and ``normalize``
above, and in the network `dendsn.competition` (``network.competition``: lateral inhibition,
k-WTA and adaptive thresholds in the forward pass).

Every local rate (the rule's, ``readout_eta``) follows the run's ``lr_schedule`` (cosine: from 1 to
0 over all steps; the BPTT pre-training epochs count as steps too).

``init: uniform`` redraws the hidden layers' weights from U(wmin, wmax) (bias 0; Dale's-law synapses
keep |W| with their units' signs; then bounds and ``normalize``) before training, so `Readout` (no plasticity) is the baseline of the same start.
``layers`` picks the hidden layers that learn (1-based; null = all). ``local_epochs = m``: hidden
layers learn for m epochs, then freeze, with the intrinsic plasticity of their competition module
(adaptive thresholds: eval mode in training passes), while the read-out keeps learning. ``pretrain_bptt_epochs =
n``: the first n epochs train everything by surrogate-gradient BPTT, then the local rule takes over.
"""

from __future__ import annotations

import contextlib
import math
import re
from typing import Optional

import torch
from torch import nn
from torchvision.utils import make_grid

from dendsn.layers.recurrent import RecurrentSynapse
from dendsn.networks import TimeDistributed
from dendsn.networks.calibrate import layer_pairs

from ..errors import UserError
from .base import LearningRule, clamp_weights, inhibitory_units, masked_update
from .bptt import BPTT
from .plasticity import (
    Connection,
    check_choice,
    check_number,
    correlate,
    expand,
    neuron_sum,
    normalize_rows,
    reduce_rows,
    topk_mask,
)

READOUT_MODES = ("gradient", "delta", "none")
INITS = ("keep", "uniform")


class PlasticLayer:
    """One (synapse, neuron) pair and what the hooks recorded in the current pass."""

    def __init__(self, name: str, synapse: nn.Module, neuron: nn.Module, is_readout: bool, between: tuple = ()):
        self.name, self.synapse, self.neuron, self.is_readout = name, synapse, neuron, is_readout
        self.between = tuple(between)  # modules between synapse and neuron (competition)
        self.module = synapse.module if isinstance(synapse, TimeDistributed) else synapse  # holds W, b
        self.conn = Connection.of(self.module, int(getattr(neuron, "inputs_per_neuron", 1)))
        self.learns = False
        self.rec: dict = {}
        self.state: dict = {}  # per-pass state of hooks (e.g. a dendrite's potential, step mode)

    @property
    def weight(self) -> torch.Tensor:
        return self.module.weight

    @property
    def bias(self) -> Optional[torch.Tensor]:
        return self.module.bias

    @property
    def single_step(self) -> bool:
        return getattr(self.neuron, "step_mode", "m") == "s"

    def add(self, key: str, value: torch.Tensor) -> None:
        self.rec.setdefault(key, []).append(value.detach())

    def seq(self, key: str) -> torch.Tensor:
        """The recording [T, B, ...] (single-step recordings stacked)."""
        v = self.rec[key]
        return v[0] if not self.single_step else torch.stack(v)

    def steps(self, key: str) -> list:
        """The recording as a list of per-step tensors [B, ...]."""
        v = self.rec[key]
        return list(v[0].unbind(0)) if not self.single_step else v

    def n_neurons(self) -> int:
        """S (linear) or C (conv) of the postsynaptic layer."""
        return self.weight.shape[0] // self.conn.k_in

    def __repr__(self) -> str:
        return f"PlasticLayer({self.name}, {self.conn.kind}, k_in={self.conn.k_in}, learns={self.learns})"


def find_layers(model: nn.Module) -> list:
    """The plastic layers of a feed-forward net (`dendsn.calibrate.layer_pairs`), named as in TensorBoard."""
    try:
        pairs = layer_pairs(model)
    except ValueError as e:
        raise UserError(f"local learning rules need a feed-forward network of (synapse, neuron) pairs: {e}") from None
    names = [f"layer{i + 1}" for i in range(len(pairs) - 1)] + ["readout"]
    try:
        return [PlasticLayer(n, s, m, i == len(pairs) - 1, b) for i, (n, (s, m, b)) in enumerate(zip(names, pairs))]
    except ValueError as e:
        raise UserError(f"learning: {e}") from None


class LocalRule(LearningRule):
    """Base of the local rules; subclasses define `delta_seq` / `delta_steps` (and may hook `observe`)."""

    readout_modes = READOUT_MODES

    def __init__(
        self,
        layers: Optional[list[int]] = None,
        readout: str = "gradient",
        readout_eta: float = 1e-3,
        wmin: Optional[float] = None,
        wmax: Optional[float] = None,
        init: str = "keep",
        normalize: Optional[float] = None,
        wta: int = 0,
        homeostasis: float = 0.0,
        target_rate: Optional[float] = None,
        local_epochs: Optional[int] = None,
        pretrain_bptt_epochs: int = 0,
        per_step_loss: bool = False,
    ):
        super().__init__(per_step_loss)
        if layers is not None:
            if isinstance(layers, int) or not all(
                isinstance(i, int) and not isinstance(i, bool) and i >= 1 for i in layers
            ):
                raise ValueError(
                    f"layers must be null (all hidden layers) or a list of hidden-layer numbers >= 1 (got layers={layers!r})"
                )
            layers = sorted(set(layers))
        self.layer_ids = layers
        self.readout_mode = check_choice("readout", readout, self.readout_modes)
        self.readout_eta = check_number("readout_eta", readout_eta, minimum=0.0)
        self.wmin = None if wmin is None else check_number("wmin", wmin)
        self.wmax = None if wmax is None else check_number("wmax", wmax)
        if self.wmin is not None and self.wmax is not None and not self.wmin < self.wmax:
            raise ValueError(f"wmin must be < wmax (got wmin={wmin}, wmax={wmax})")
        self.init = check_choice("init", init, INITS)
        if init == "uniform" and (self.wmin is None or self.wmax is None):
            raise ValueError("init=uniform draws from U(wmin, wmax): set both wmin and wmax")
        self.normalize = None if normalize is None else check_number("normalize", normalize, above=0.0)
        if not isinstance(wta, int) or isinstance(wta, bool) or wta < 0:
            raise ValueError(f"wta must be an integer >= 0 (0 = off) (got wta={wta!r})")
        self.wta = wta
        self.homeostasis = check_number("homeostasis", homeostasis, minimum=0.0)
        self.target_rate = (
            None if target_rate is None else check_number("target_rate", target_rate, minimum=0.0, maximum=1.0)
        )
        if (
            not isinstance(pretrain_bptt_epochs, int)
            or isinstance(pretrain_bptt_epochs, bool)
            or pretrain_bptt_epochs < 0
        ):
            raise ValueError(
                f"pretrain_bptt_epochs must be an integer >= 0 (got pretrain_bptt_epochs={pretrain_bptt_epochs!r})"
            )
        self.pretrain_bptt_epochs = pretrain_bptt_epochs
        if local_epochs is not None and (
            not isinstance(local_epochs, int) or isinstance(local_epochs, bool) or local_epochs < 0
        ):
            raise ValueError(
                f"local_epochs must be null (every epoch) or an integer >= 0 (got local_epochs={local_epochs!r})"
            )
        self.local_epochs = local_epochs
        self.epochs_done = 0
        self.steps_done, self.total_steps, self.schedule = 0, 1, "none"
        self.layers: list = []
        self.recording = False
        self._bptt: Optional[BPTT] = None
        self._handles: list = []
        self._grad_flags: dict = {}
        self._stats: dict = {}
        self._epoch_stats: dict = {}
        self._input_shape: Optional[tuple] = None
        self._y: Optional[torch.Tensor] = None

    # --- which layers -------------------------------------------------------------------------------
    @property
    def readout_layer(self) -> PlasticLayer:
        return self.layers[-1]

    @property
    def hidden(self) -> list:
        return self.layers[:-1]

    def selected_hidden(self) -> list:
        """The hidden layers chosen by ``layers`` (all when None)."""
        if self.layer_ids is None:
            return self.hidden
        n = len(self.hidden)
        bad = [i for i in self.layer_ids if i > n]
        if bad:
            raise UserError(f"learning.layers={self.layer_ids}: the network has {n} hidden layer(s) (1..{n})")
        return [self.hidden[i - 1] for i in self.layer_ids]

    def local_layers(self) -> list:
        """The layers this rule updates locally (hidden by default; a rule's own read-out mode adds the read-out)."""
        return [l for l in self.layers if l.learns and (l.is_readout or self.hidden_plastic())]

    def hidden_plastic(self) -> bool:
        """Hidden layers learn during the first ``local_epochs`` epochs after any BPTT pre-training."""
        return self.local_epochs is None or self.epochs_done - self.pretrain_bptt_epochs < self.local_epochs

    def readout_is_local(self) -> bool:
        """True when the read-out learns by the rule itself (a rule's own ``readout`` mode)."""
        return self.readout_mode not in READOUT_MODES

    # --- setup --------------------------------------------------------------------------------------
    def trainable_parameters(self, model: nn.Module):
        ro = self.readout_layer
        return list(ro.synapse.parameters()) + list(ro.neuron.parameters())

    def setup(self, model, optimizer_factory, total_steps, lr_schedule="none", context=None) -> None:
        if context is not None:
            self.attach(context)
        if any(isinstance(m, RecurrentSynapse) for m in model.modules()):
            name = re.sub(r"(?<=[a-z])(?=[A-Z])", "_", type(self).__name__).lower()
            raise UserError(
                f"learning={name} is a local rule and the network has recurrent synapses "
                f"(network.recurrent): local rules learn feed-forward synapses only; use learning=bptt"
            )
        decoder = self.decoder
        if decoder is not None and not decoder.spiking and self.readout_mode != "gradient":
            name = re.sub(r"(?<=[a-z])(?=[A-Z])", "_", type(self).__name__).lower()
            raise UserError(
                f"readout={decoder.name} reads a non-spiking membrane and learning={name} "
                f"learning.readout={self.readout_mode} trains the read-out from its spikes; use "
                f"learning.readout=gradient, or a spiking read-out (readout=counts, rate, first_spike, ...)"
            )
        if decoder is not None and self.readout_mode == "delta" and decoder.name in ("first_spike", "time_weighted"):
            name = re.sub(r"(?<=[a-z])(?=[A-Z])", "_", type(self).__name__).lower()
            raise UserError(
                f"learning={name} learning.readout=delta trains the read-out towards target spike rates, but "
                f"readout={decoder.name} predicts from spike times; use learning.readout=gradient (the "
                f"read-out's own loss), or readout=counts / rate"
            )
        self.total_steps, self.schedule = max(1, int(total_steps)), lr_schedule
        self.layers = find_layers(model)
        self.check_signs()
        for l in self.selected_hidden():
            l.learns = True
        self.readout_layer.learns = self.readout_is_local()
        self.prepare_weights(self.hidden)
        self._grad_flags = {p: p.requires_grad for p in model.parameters()}
        if self.pretrain_bptt_epochs:
            self._bptt = BPTT(self.per_step_loss)
            # the same context: pre-training minimises the run's read-out loss, on the same clock and scale
            self._bptt.setup(model, optimizer_factory, total_steps, "none", self.context)
        if self.readout_mode == "gradient":
            super().setup(model, optimizer_factory, total_steps, lr_schedule, context)
        elif lr_schedule not in ("none", "cosine"):
            raise UserError(f"lr_schedule={lr_schedule!r} is not known; use none or cosine")
        if self.homeostasis:
            for l in self.local_layers():
                if l.bias is None:
                    raise UserError(
                        "learning.homeostasis adapts thresholds through the synapse bias: "
                        "set network.bias=true or learning.homeostasis=0"
                    )
        self.register_hooks()
        self.setup_rule(model)

    def setup_rule(self, model: nn.Module) -> None:
        """Subclass hook after the layers are known."""

    def check_signs(self) -> None:
        """Refuse bounds of the rule that would silence one kind of a Dale's-law synapse (``synapse.inhibitory_fraction``):
        learning.wmin >= 0 pins every inhibitory weight at 0, learning.wmax <= 0 every excitatory one."""
        name = re.sub(r"(?<=[a-z])(?=[A-Z])", "_", type(self).__name__).lower()
        for l in self.hidden:
            n_inh, n_exc = inhibitory_units(l.module)
            if n_inh and self.wmin is not None and self.wmin >= 0:
                raise UserError(
                    f"learning={name} learning.wmin={self.wmin:g} keeps weights >= 0, and {l.name} has {n_inh} "
                    f"inhibitory inputs (synapse.inhibitory_fraction: weights <= 0): all would be 0; set "
                    f"learning.wmin below 0 (e.g. learning.wmin=-1.0), or learning.wmin=null"
                )
            if n_exc and self.wmax is not None and self.wmax <= 0:
                raise UserError(
                    f"learning={name} learning.wmax={self.wmax:g} keeps weights <= 0, and {l.name} has {n_exc} "
                    f"excitatory inputs (synapse.inhibitory_fraction: weights >= 0): all would be 0; set "
                    f"learning.wmax above 0, or learning.wmax=null"
                )

    @torch.no_grad()
    def prepare_weights(self, layers: list) -> None:
        """``init``, bounds and ``normalize`` of the hidden layers before training."""
        for l in layers:
            if self.init == "uniform":
                l.weight.uniform_(self.wmin, self.wmax)
                sign = getattr(l.module, "sign", None)
                if sign is not None:  # Dale's law: |W| with each presynaptic unit's sign
                    l.weight.abs_().mul_(sign)
                if l.bias is not None:
                    l.bias.zero_()
            self.constrain(l)

    @torch.no_grad()
    def constrain(self, layer: PlasticLayer) -> None:
        """Hidden layers: the rule's bounds and the synapse's own constraints (`clamp_weights`: its bounds,
        E/I signs, mask), then row normalisation, then both again, so every constraint holds at the end.
        The read-out: the synapse's own constraints."""
        W = layer.weight
        if layer.is_readout:
            clamp_weights(layer.synapse)
            return
        if self.wmin is not None or self.wmax is not None:
            W.clamp_(self.wmin, self.wmax)
        clamp_weights(layer.synapse)
        if self.normalize is not None:
            normalize_rows(W, self.normalize)
            if self.wmin is not None or self.wmax is not None:
                W.clamp_(self.wmin, self.wmax)
            clamp_weights(layer.synapse)

    def calibration_skip(self) -> list:
        """Every layer: a local rule sets the scale of what it trains itself (``init``, ``normalize``, the
        read-out's delta rule and its rate), so `init_rate` leaves the whole network as the rule made it."""
        return list(range(len(self.layers)))

    # --- hooks --------------------------------------------------------------------------------------
    def register_hooks(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []
        for l in self.layers:
            self._handles.append(l.synapse.register_forward_hook(self._synapse_hook(l)))
            self._handles.append(l.neuron.register_forward_pre_hook(self._neuron_pre_hook(l)))
            self._handles.append(l.neuron.register_forward_hook(self._neuron_hook(l)))

    def _synapse_hook(self, layer):
        def hook(module, inputs, output):
            if self.recording and self.records(layer):
                layer.add("pre", inputs[0])
                layer.add("cur", output)

        return hook

    def _neuron_pre_hook(self, layer):
        def hook(module, inputs):
            if not (self.recording and self.records(layer)):
                return None
            layer.add("inp", inputs[0])
            x = self.observe(layer, inputs[0])
            return None if x is None else (x, *inputs[1:])

        return hook

    def _neuron_hook(self, layer):
        def hook(module, inputs, output):
            if self.recording and self.records(layer):
                layer.add("post", output)

        return hook

    def records(self, layer: PlasticLayer) -> bool:
        """Whether the hooks record ``layer`` in this pass."""
        if layer.is_readout:
            return layer.learns or self.readout_mode == "delta"
        return layer.learns and self.hidden_plastic()

    def observe(self, layer: PlasticLayer, x: torch.Tensor) -> Optional[torch.Tensor]:
        """Subclass hook on a neuron's input current x (record it; return a changed input, or None)."""
        return None

    # --- one batch ------------------------------------------------------------------------------------
    def forward(self, model: nn.Module, x_seq: torch.Tensor) -> torch.Tensor:
        """The network's output [T, B, C]: one multi-step call, or T single-step calls."""
        if any(l.single_step for l in self.layers):
            return torch.stack([model(x_seq[t]) for t in range(x_seq.shape[0])])
        return model(x_seq)

    def record_pass(self, model: nn.Module, x_seq: torch.Tensor, grad: bool = False) -> torch.Tensor:
        """A forward pass with the hooks recording (state reset first)."""
        for l in self.layers:
            l.rec, l.state = {}, {}
        reset_state(model)
        self.recording = True
        try:
            with torch.set_grad_enabled(grad), self.frozen_intrinsic():
                return self.forward(model, x_seq)
        finally:
            self.recording = False

    @contextlib.contextmanager
    def frozen_intrinsic(self, every_layer: bool = False):
        """Learning hidden layers past ``local_epochs`` (or all, ``every_layer``) keep their intrinsic
        plasticity still too: the modules between their synapse and neuron (adaptive thresholds) run
        in eval mode. Layers that never learn synaptically keep the network's own behaviour."""
        still = [l for l in self.hidden if every_layer or (l.learns and not self.hidden_plastic())]
        frozen = [m for l in still for m in l.between if m.training]
        for m in frozen:
            m.train(False)
        try:
            yield
        finally:
            for m in frozen:
                m.train(True)

    def _set_phase_grads(self, bptt: bool) -> None:
        readout = set(self.trainable_parameters(None)) if self.layers else set()
        for p, flag in self._grad_flags.items():
            p.requires_grad_(flag if (bptt or (p in readout and self.readout_mode == "gradient")) else False)

    def train_batch(self, model, x_seq, y, autocast=None):
        if self._bptt is not None and self.epochs_done < self.pretrain_bptt_epochs:
            self._set_phase_grads(bptt=True)
            self.steps_done += 1
            return self._bptt.train_batch(model, x_seq, y, autocast)
        self._set_phase_grads(bptt=False)
        self._input_shape = tuple(x_seq.shape[2:])
        self._y = y
        out = self.run(model, x_seq, y)
        loss = self.loss(out.float(), y)
        self.phase("forward")
        if self.readout_mode == "gradient":
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.phase("backward")
            self.optimizer.step()
            if self.scheduler is not None:
                self.scheduler.step()
            clamp_weights(self.readout_layer.synapse)  # its bounds, E/I signs, mask
            self.phase("optimizer")
        with torch.no_grad():
            out_d = out.detach()
            self.learn(out_d, y)
            if self.readout_mode == "delta":
                self.delta_readout(out_d, y)
        self.phase("plasticity")
        for l in self.layers:
            l.rec, l.state = {}, {}
        self.steps_done += 1
        return loss.detach(), out.detach()

    def run(self, model, x_seq, y) -> torch.Tensor:
        """The recorded training pass(es); returns the read-out spikes used for the loss."""
        return self.record_pass(model, x_seq, grad=self.readout_mode == "gradient")

    @torch.no_grad()
    def learn(self, out: torch.Tensor, y: torch.Tensor) -> None:
        """Local updates of every locally learning layer, then homeostasis."""
        for l in self.local_layers():
            dW, db = self.delta_steps(l, out, y) if l.single_step else self.delta_seq(l, out, y)
            self.apply(l, dW, db)
        if self.homeostasis:
            for l in self.local_layers():
                if l.is_readout:
                    continue
                rate = self.learning_rate_of(l)
                target = rate.mean() if self.target_rate is None else self.target_rate
                spread = self.current_spread(l)
                l.bias.sub_((self.homeostasis * spread / l.conn.k_in) * expand(l.conn, rate - target))

    def learning_rate_of(self, layer: PlasticLayer) -> Optional[torch.Tensor]:
        """Spikes per step of each neuron that counted for learning in this batch ([S] / [C])."""
        post = self.learning_post(layer, layer.seq("post"), layer.seq("inp"))
        n = post.numel() // layer.n_neurons()
        return reduce_rows(layer.conn, post) / max(n, 1)

    def rate_factor(self) -> float:
        """The schedule of the local rates: 1, or cosine from 1 to 0 over the run (``lr_schedule=cosine``)."""
        if self.schedule != "cosine":
            return 1.0
        return 0.5 * (1.0 + math.cos(math.pi * min(self.steps_done, self.total_steps) / self.total_steps))

    def current_spread(self, layer: PlasticLayer) -> torch.Tensor:
        """sigma: the spread (std over the layer's neurons) of their total synaptic currents, batch mean."""
        cur, b = layer.seq("cur"), layer.bias
        if b is not None:  # W x only: the spread of the drive
            cur = cur - (b if layer.conn.kind == "linear" else b.view(-1, 1, 1))
        total = neuron_sum(layer.conn, cur)
        return total.std(dim=layer.conn.channel_dim).mean()

    def learning_post(self, layer: PlasticLayer, post: torch.Tensor, drive: torch.Tensor) -> torch.Tensor:
        """The postsynaptic spikes that count for learning: all, or those of the ``wta`` neurons with the
        largest input current ``drive`` (the neuron's input, after any network competition)."""
        if not self.wta or layer.is_readout:
            return post
        score = neuron_sum(layer.conn, drive)  # [.., S] / [.., C, H, W]
        return post * topk_mask(score, self.wta, layer.conn.channel_dim)

    def delta_seq(self, layer: PlasticLayer, out: torch.Tensor, y: torch.Tensor):
        """(dW, db or None) from the [T, B, ...] recordings, vectorised over T."""
        raise NotImplementedError

    def delta_steps(self, layer: PlasticLayer, out: torch.Tensor, y: torch.Tensor):
        """(dW, db or None): the same equations as `delta_seq`, one time step after the other."""
        raise NotImplementedError

    @torch.no_grad()
    def apply(self, layer: PlasticLayer, dW: torch.Tensor, db: Optional[torch.Tensor] = None) -> None:
        f = self.rate_factor()
        dW = masked_update(layer.module, dW)
        layer.weight.add_(dW.to(layer.weight.dtype), alpha=f)
        if db is not None and layer.bias is not None:
            layer.bias.add_(db.to(layer.bias.dtype), alpha=f)
        self.constrain(layer)
        s = self._stats.setdefault(layer.name, [torch.zeros((), device=dW.device), 0])
        s[0] += dW.abs().mean()
        s[1] += 1

    @torch.no_grad()
    def delta_readout(self, out: torch.Tensor, y: torch.Tensor) -> None:
        """The local delta rule on rates: dW = readout_eta (onehot(y) - r_out)^T @ r_pre, db = readout_eta sum e."""
        ro = self.readout_layer
        r_out = out.float().mean(0)  # [B, C]
        e = nn.functional.one_hot(y, r_out.shape[-1]).to(r_out.dtype) - r_out
        r_pre = ro.seq("pre").float().mean(0)  # [B, I]
        eta = self.readout_eta * self.rate_factor()
        dW = masked_update(ro.module, eta * expand(ro.conn, correlate(ro.conn, e, r_pre)))
        db = eta * expand(ro.conn, e.sum(0))
        ro.weight.add_(dW)
        if ro.bias is not None:
            ro.bias.add_(db)
        clamp_weights(ro.synapse)
        s = self._stats.setdefault(ro.name, [torch.zeros((), device=dW.device), 0])
        s[0] += dW.abs().mean()
        s[1] += 1

    @torch.no_grad()
    def eval_batch(self, model, x_seq, y):
        out = self.forward(model, x_seq)
        return self.loss(out.float(), y), out

    # --- epochs, logging, state -----------------------------------------------------------------------
    def lr(self) -> float:
        """The rate the rule applies now: BPTT's during pre-training; the hidden layers' rule rate
        (`rate`, under the cosine factor) while they learn; after ``local_epochs`` the read-out's."""
        if self._bptt is not None and self.epochs_done < self.pretrain_bptt_epochs:
            return self._bptt.lr()
        if self.hidden_plastic() and any(l.learns for l in self.hidden):
            return self.rate() * self.rate_factor()
        if self.optimizer is not None:
            return super().lr()
        if self.readout_mode == "delta":
            return self.readout_eta * self.rate_factor()
        return self.rate() * self.rate_factor() if self.readout_is_local() else 0.0

    def rate(self) -> float:
        """The rule's own learning rate (logged as ``lr`` when no optimizer is in use)."""
        return self.readout_eta

    def epoch_end(self) -> None:
        self.epochs_done += 1
        stats = {}
        for name, (total, n) in self._stats.items():
            stats[f"plasticity/{name}/mean_abs_dw"] = float(total) / max(n, 1)
        self._stats = {}
        with torch.no_grad():
            for l in self.layers:
                if l.learns or (l.is_readout and self.readout_mode != "none"):
                    W = l.weight.detach().float()
                    stats[f"plasticity/{l.name}/w_mean"] = float(W.mean())
                    stats[f"plasticity/{l.name}/w_std"] = float(W.std()) if W.numel() > 1 else 0.0
                    stats[f"plasticity/{l.name}/w_min"] = float(W.min())
                    stats[f"plasticity/{l.name}/w_max"] = float(W.max())
        stats.update(self.extra_scalars())
        self._epoch_stats = stats

    def extra_scalars(self) -> dict:
        return {}

    def epoch_scalars(self) -> dict:
        return dict(self._epoch_stats)

    def epoch_images(self) -> dict:
        if not self.layers:
            return {}
        first = self.layers[0]
        return {f"receptive_fields/{first.name}": receptive_fields(first, self._input_shape)}

    def state_dict(self) -> dict:
        sd = super().state_dict()
        sd["epochs_done"], sd["steps_done"] = self.epochs_done, self.steps_done
        sd["bptt"] = self._bptt.state_dict() if self._bptt is not None else None
        sd["rule"] = self.rule_state()
        return sd

    def load_state_dict(self, sd: dict) -> list:
        changed = super().load_state_dict(sd)
        self.epochs_done, self.steps_done = int(sd.get("epochs_done", 0)), int(sd.get("steps_done", 0))
        if self._bptt is not None and sd.get("bptt") is not None:
            changed = changed or self._bptt.load_state_dict(sd["bptt"])
        self.load_rule_state(sd.get("rule") or {})
        return changed

    def rule_state(self) -> dict:
        return {}

    def load_rule_state(self, sd: dict) -> None:
        pass


def reset_state(model: nn.Module) -> None:
    """Forget the network's state (a new sample starts)."""
    reset = getattr(model, "reset", None)
    if callable(reset):
        reset()


@torch.no_grad()
def receptive_fields(layer: PlasticLayer, input_shape: Optional[tuple], n_max: int = 64) -> torch.Tensor:
    """An image grid [3, H, W] of the first ``n_max`` neurons' weights (summed over compartments),
    each tile scaled to [0, 1]; linear rows are shown in the shape of the network input when they fit."""
    W = layer.weight.detach().float().cpu()
    k = layer.conn.k_in
    if layer.conn.kind == "linear":
        W = W.view(-1, k, W.shape[1]).sum(1)  # [S, I]
        I = W.shape[1]
        if input_shape is not None and math.prod(input_shape) == I and len(input_shape) in (2, 3):
            shape = tuple(input_shape) if len(input_shape) == 3 else (1, *input_shape)
        elif math.isqrt(I) ** 2 == I:
            shape = (1, math.isqrt(I), math.isqrt(I))
        else:
            shape = (1, 1, I)
        tiles = W.view(-1, *shape)
    else:
        tiles = W.view(k, -1, *W.shape[1:]).sum(0)  # [C, C_in, kh, kw]
    tiles = tiles[:n_max]
    if tiles.shape[1] not in (1, 3):
        tiles = tiles.mean(1, keepdim=True)
    lo = tiles.flatten(1).min(1).values.view(-1, 1, 1, 1)
    hi = tiles.flatten(1).max(1).values.view(-1, 1, 1, 1)
    tiles = (tiles - lo) / (hi - lo).clamp_min(1e-12)
    return make_grid(tiles, nrow=8, padding=1, pad_value=1.0)

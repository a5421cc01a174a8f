"""What the loop watches in the network: spike counts and the figures' records of an evaluation,
gradient norms, finiteness."""

from __future__ import annotations

import torch

from dendsn.events import EventStats

from ..runs import distributed as dist
from .figures import FIGURES


class Monitor:
    """Forward hooks on spiking layers during an evaluation: per-neuron spike counts (on the device),
    and, for the first batch only when ``record`` is on, what each registered figure records
    (`training.figures`: the spikes of ``n_samples`` samples, the membrane traces of ``n_neurons`` neurons
    per layer, ...)."""

    def __init__(self, layers, n_samples: int = 3, n_neurons: int = 4, events=None, figures=None):
        self.layers = layers
        self.events = events  # an event network (`dendsn.events.EventMLP`): its own statistics
        self.event_stats = None
        self.n_samples, self.n_neurons = n_samples, n_neurons
        self.recorders = [f for f in (FIGURES if figures is None else figures) if f.record is not None]
        self.active = self.record = False
        self.counts: dict = {}
        self.records: dict = {}  # figure name -> layer -> what its record function kept
        self.handles = [
            m.register_forward_hook(self.hook(name)) for name, m in layers if getattr(m, "spiking", True)
        ]  # not a non-spiking LI read-out

    @property
    def rasters(self) -> dict:
        """layer -> [T, n_samples, N] spikes of the first batch (the event network: 'network' -> its raster)."""
        return self.records.get("raster", {})

    @property
    def traces(self) -> dict:
        """layer -> {"v", "spikes", "neurons", "v_threshold"[, "v_dend"]} of sample 0's neurons."""
        return self.records.get("traces", {})

    def hook(self, name):
        def hook(module, inputs, out):
            if not self.active:
                return
            o = out.detach()
            if o.dim() < 3:  # single-step modules: no time axis to report
                return
            flat = o.reshape(o.shape[0], o.shape[1], -1)  # [T, B, N]
            c, n = self.counts.get(name, (0.0, 0))
            self.counts[name] = (c + flat.float().sum((0, 1)), n + flat.shape[0] * flat.shape[1])
            if self.record and name not in self.recorded:
                self.recorded.add(name)
                for spec in self.recorders:
                    data = spec.record(name, module, flat, self)
                    if data is not None:
                        self.records.setdefault(spec.name, {})[name] = data

        return hook

    def start(self, record: bool = False):
        self.active, self.counts, self.records, self.recorded = True, {}, {}, set()
        self.set_recording(record)
        if self.events is not None:
            self.events.stats = EventStats(record=self.n_samples if record else 0)

    def set_recording(self, on: bool) -> None:
        """Keep the layers' potential sequences (``store_seq``, the general path) only while recording."""
        self.record = on
        for _, m in self.layers:
            if on and hasattr(m, "store_seq"):
                m.store_seq = True
            elif "store_seq" in vars(m):
                del m.store_seq  # back to the class default (off)

    def stop_recording(self) -> None:
        if self.record:
            self.set_recording(False)

    def stop(self) -> dict:
        """The mean firing rate of every layer (rate/<layer>) over the evaluation."""
        self.active = False
        self.set_recording(False)
        if self.events is not None and self.events.stats is not None:
            stats, self.events.stats = self.events.stats, None
            if dist.active():
                stats.all_reduce(self.events)
            self.event_stats = stats
            if stats.raster is not None:
                self.records.setdefault("raster", {})["network"] = stats.raster  # continuous-time event raster
            return stats.scalars(self.events)
        if dist.active():  # every rank counted its shard: the sums over all of them
            self.counts = {
                name: self.reduced(name)
                for name, m in self.layers  # the same layers on every
                if getattr(m, "spiking", True) and name in self.counts
            }  # rank (each saw a batch)
        return {f"rate/{k}": float(c.sum() / (max(n, 1) * c.numel())) for k, (c, n) in self.counts.items()}

    def reduced(self, name: str) -> tuple:
        c, n = self.counts[name]
        total = dist.reduce_sum(torch.cat([c.float().flatten(), torch.tensor([float(n)], device=c.device)]))
        return total[:-1].reshape(c.shape), int(total[-1].item())

    def neuron_rates(self) -> dict:
        """layer -> [N] each neuron's mean spikes per step over the evaluation (on the CPU); an event network:
        mean spikes per trial."""
        if self.events is not None and self.event_stats is not None:
            return self.event_stats.per_neuron(self.events)
        return {k: (c / max(n, 1)).cpu() for k, (c, n) in self.counts.items()}

    def potentials(self) -> dict:
        out = {}
        for name, m in self.layers:
            for attr in ("v", "v_dend"):
                v = getattr(m, attr, None)
                if isinstance(v, torch.Tensor):
                    out[f"{name}/{attr}"] = v.detach()
        return out

    def remove(self) -> None:
        """Take the hooks off the layers."""
        for h in self.handles:
            h.remove()


def weights_finite(model: torch.nn.Module) -> bool:
    """One host sync: are all parameters finite? (NaN weights silence spikes but keep the loss finite.)"""
    flags = [torch.isfinite(p).all() for p in model.parameters()]
    return bool(torch.stack(flags).all()) if flags else True


def grad_norms(named: dict) -> dict:
    """grad_norm/<layer>: the L2 norm of the gradients of each layer's parameters (after backward)."""
    by_layer: dict = {}
    for key, p in named.items():
        if p.grad is not None:
            by_layer.setdefault(key.split("/", 1)[0], []).append(p.grad.detach().float().pow(2).sum())
    return {f"grad_norm/{k}": torch.stack(v).sum().sqrt() for k, v in by_layer.items()}

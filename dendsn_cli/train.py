"""The training loop of `dendsn train` and the evaluation of `dendsn eval`.

    build:    dataset -> device tensors, encoder, neuron factory -> network, learning rule + optimizer
    per epoch: for each batch: encode -> reset state -> rule.train_batch (forward, loss, update)
               evaluate the test split (inference mode) -> TensorBoard -> checkpoints/last.pt (+ best.pt)
               -> metrics.json
    finally:  hparams + final metrics, one summary line

Metrics are summed on the device and read back only every `SYNC_EVERY` batches (progress bar, NaN
check), never once per batch. Ctrl-C / SIGTERM set a flag; the loop stops after the current batch
and saves a checkpoint that holds the position inside the epoch, so `resume=` continues exactly.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from . import checkpoint
from .errors import UserError
from .learning.base import PhaseClock

log = logging.getLogger("dendsn")   # records go to <run dir>/train.log (conf/hydra/job_logging/dendsn.yaml)

SYNC_EVERY = 20


class Interrupted(Exception):
    """The run was stopped by Ctrl-C / SIGTERM after saving."""


class Diverged(Exception):
    """The loss became NaN or infinite."""


def tune_cpu_allocator() -> bool:
    """Let glibc's malloc keep freed memory for reuse (CPU runs). Every batch allocates and frees the
    same large tensors; by default glibc hands blocks of 32 MiB and more (and, after trimming, smaller
    ones) back to the OS, so each batch faults fresh zero pages in again. Raising the mmap and trim
    thresholds keeps them in the heap. A no-op (False) where mallopt is missing (not glibc)."""
    try:
        import ctypes

        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
    return bool(mallopt(M_MMAP_THRESHOLD, 1 << 30)) and bool(mallopt(M_TRIM_THRESHOLD, 1 << 30))


def select_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError(f"device={name} but no CUDA GPU is visible to torch; use device=cpu or device=auto")
        index = int(name.split(":")[1]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise UserError(f"device={name} but only {torch.cuda.device_count()} GPU(s) are visible; use cuda:0..")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _instantiate(node, group: str, **kwargs):
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as e:
        cause = e.__cause__ or e
        if isinstance(cause, UserError):
            raise cause from None
        raise UserError(f"{group}: {cause}") from None
    except (ValueError, TypeError) as e:
        raise UserError(f"{group}: {e}") from None


def _call(factory, group: str):
    try:
        return factory()
    except (ValueError, TypeError) as e:
        raise UserError(f"{group}: {e}") from None


@dataclass
class Parts:
    model: torch.nn.Module
    train: object
    test: object
    info: object
    encoder: torch.nn.Module
    rule: object
    layers: list = field(default_factory=list)  # (name, spiking module)


def build(cfg: DictConfig, device: torch.device) -> Parts:
    dataset = _instantiate(cfg.dataset, "dataset")
    train, test, info = dataset.load(device)
    encoder = _instantiate(cfg.encoder, "encoder").to(device)
    neuron = _instantiate(cfg.neuron, "neuron")
    _call(neuron, "neuron")  # constructor checks (tau > 1 ...) name the neuron group
    network_cfg = OmegaConf.to_container(cfg.network, resolve=True)
    readout = _instantiate(network_cfg.pop("readout"), "network.readout")
    _call(readout, "network.readout")
    model = _instantiate(
        network_cfg, "network", input_shape=list(info.input_shape), n_classes=info.n_classes,
        neuron=neuron, readout=readout,
    ).to(device)
    rule = _instantiate(cfg.learning, "learning")
    return Parts(model, train, test, info, encoder, rule, spiking_layers(model))


def calibrate(parts: Parts, cfg: DictConfig) -> None:
    """Scale each layer's synapses so it fires at ``cfg.init_rate`` on the first training batch
    (`dendsn.calibrate`); the run's random stream is left as it was. Layers the rule keeps at a
    fixed scale (``rule.calibration_skip``) stay as they are."""
    from dendsn.calibrate import calibrate_rates, describe

    x, _ = next(parts.train.batches(cfg.batch_size, shuffle=False))
    devices = [x.device.index] if x.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        x_seq = parts.encoder(x, cfg.T, time_major=parts.info.time_major)
    try:
        results = calibrate_rates(parts.model, x_seq, cfg.init_rate, skip=parts.rule.calibration_skip())
    except ValueError as e:
        raise UserError(f"init_rate={cfg.init_rate}: {e}; set init_rate=null to keep the plain initialisation") from None
    if results:
        names = [name for name, _ in parts.layers]
        print(f"dendsn: init_rate={cfg.init_rate}: {describe(results, names)}", file=sys.stderr)


def spiking_layers(model: torch.nn.Module) -> list:
    from dendsn.neurons import SpikingModule

    mods = [m for m in model.modules() if isinstance(m, SpikingModule)]
    names = [f"layer{i + 1}" for i in range(len(mods) - 1)] + ["readout"]
    return list(zip(names, mods))


class Monitor:
    """Forward hooks on spiking layers: firing rates (on device), one raster, last potentials."""

    def __init__(self, layers):
        self.layers = layers
        self.active = False
        self.rates: dict = {}
        self.rasters: dict = {}
        self.handles = [m.register_forward_hook(self._hook(name)) for name, m in layers]

    def _hook(self, name):
        def hook(module, inputs, out):
            if not self.active:
                return
            s, n = self.rates.get(name, (0.0, 0))
            self.rates[name] = (s + out.detach().float().sum(), n + out.numel())
            if name not in self.rasters and out.dim() >= 3:  # [T, B, ...] -> sample 0: [T, N]
                self.rasters[name] = out[:, 0].detach().reshape(out.shape[0], -1)[:, :256].clone()
        return hook

    def start(self):
        self.active, self.rates, self.rasters = True, {}, {}

    def stop(self) -> dict:
        self.active = False
        return {f"rate/{k}": float(s / max(n, 1)) for k, (s, n) in self.rates.items()}

    def potentials(self) -> dict:
        out = {}
        for name, m in self.layers:
            for attr in ("v", "v_dend"):
                v = getattr(m, attr, None)
                if isinstance(v, torch.Tensor):
                    out[f"{name}/{attr}"] = v.detach()
        return out


def _weights_finite(model: torch.nn.Module) -> bool:
    """One host sync: are all parameters finite? (NaN weights silence spikes but keep the loss finite.)"""
    flags = [torch.isfinite(p).all() for p in model.parameters()]
    return bool(torch.stack(flags).all()) if flags else True


def _correct(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (out.sum(0).argmax(-1) == y).sum()


def evaluate(parts: Parts, cfg, monitor: Optional[Monitor] = None) -> tuple[float, float]:
    model, rule, test = parts.model, parts.rule, parts.test
    model.eval()
    sums = torch.zeros(2, device=test.y.device)
    if monitor:
        monitor.start()
    with torch.inference_mode():
        for x, y in test.batches(cfg.batch_size, shuffle=False):
            model.reset()
            loss, out = rule.eval_batch(model, parts.encoder(x, cfg.T, time_major=parts.info.time_major), y)
            sums[0] += loss.float() * y.shape[0]
            sums[1] += _correct(out, y)
    loss_sum, correct = sums.tolist()
    n = len(test)
    return loss_sum / n, correct / n


def _write_json(path: Path, obj: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2))
    os.replace(tmp, path)


class StopFlag:
    """Ctrl-C / SIGTERM ask the loop to stop after the current batch; a second Ctrl-C forces it."""

    def __init__(self):
        self.requested = False
        self.saved = {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self.saved[sig] = signal.signal(sig, self._handler)
            except ValueError:  # not the main thread (e.g. a launcher thread)
                pass
        return self

    def _handler(self, signum, frame):
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc):
        for sig, h in self.saved.items():
            signal.signal(sig, h)


def hparams_of(cfg: DictConfig, choices: dict) -> dict:
    flat = {f"choice/{k}": str(v) for k, v in choices.items() if v is not None and not k.startswith("hydra")}
    for key in ("seed", "epochs", "T", "batch_size", "lr_schedule", "amp"):
        flat[key] = cfg[key]
    def walk(node, prefix):
        for k, v in node.items():
            if str(k).startswith("_"):
                continue
            if isinstance(v, dict):
                walk(v, f"{prefix}{k}.")
            elif isinstance(v, (int, float, str, bool)):
                flat[f"{prefix}{k}"] = v
    walk(OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False), "")
    return {k: v for k, v in flat.items() if not k.startswith(("resume", "ckpt", "progress", "profile"))}


def train(cfg: DictConfig, run_dir: Path, overrides: list[str], choices: dict | None = None) -> dict:
    """Train per ``cfg``, writing checkpoints, TensorBoard events and metrics.json into ``run_dir``."""
    t_start = time.perf_counter()
    device = select_device(cfg.device)
    if device.type == "cpu":
        tune_cpu_allocator()
    seed_everything(cfg.seed)
    parts = build(cfg, device)
    model, rule, train_split = parts.model, parts.rule, parts.train
    steps = math.ceil(len(train_split) / cfg.batch_size)
    optim_factory = _instantiate(cfg.optim, "optim")
    rule.setup(model, optim_factory, cfg.epochs * steps, cfg.lr_schedule)
    if cfg.init_rate is not None and not cfg.resume:
        calibrate(parts, cfg)
    autocast = None
    if cfg.amp != "none":
        if device.type == "cuda":
            autocast = torch.autocast("cuda", dtype=torch.bfloat16 if cfg.amp == "bf16" else torch.float16)
        else:
            print(f"dendsn: amp={cfg.amp} needs CUDA; running in float32 on {device}", file=sys.stderr)

    ckpt_dir = run_dir / "checkpoints"
    start_epoch, start_batch, history = 0, 0, []
    best = {"test_acc": -1.0, "epoch": 0}
    partial = None
    if cfg.resume:
        path = checkpoint.find(cfg.resume, "resume")
        ck = checkpoint.load(path, "resume")
        checkpoint.load_model_state(model, ck["model"], path, "resume")
        rule.load_state_dict(ck["rule"])
        if rule.scheduler is not None and hasattr(rule.scheduler, "T_max"):
            rule.scheduler.T_max = max(1, cfg.epochs * steps)  # resumed with more epochs: stretch the schedule
        checkpoint.set_rng_state(ck["rng"])
        start_epoch, start_batch = ck["epoch"], ck["batch"]
        history, best, partial = ck["history"], ck["best"], ck.get("progress")
        if start_epoch >= cfg.epochs:
            raise UserError(f"resume={cfg.resume}: that run already finished {start_epoch} epochs; raise epochs= to train further")
        print(f"dendsn: resuming {path} at epoch {start_epoch + 1}, batch {start_batch}", file=sys.stderr)
        log.info("resuming %s at epoch %d, batch %d", path, start_epoch + 1, start_batch)
    else:
        log.info("training on %s: %d parameters, %d train / %d test samples, %d batches per epoch",
                 device, sum(p.numel() for p in model.parameters()), len(train_split), len(parts.test), steps)

    clock = rule.clock = PhaseClock(device) if cfg.profile else None   # (a plug-in rule may lack the attribute)
    logger = _instantiate(cfg.logger, "logger")
    logger.open(str(run_dir), purge_step=start_epoch + 1 if cfg.resume else None)
    if not cfg.resume:
        logger.config(OmegaConf.to_yaml(cfg))
    monitor = Monitor(parts.layers)
    times = {"data": 0.0, "train_step": 0.0, "evaluate": 0.0, "logging": 0.0, "checkpoint": 0.0}
    status, samples_seen, train_time = "running", 0, 0.0
    metrics_path = run_dir / "metrics.json"

    def make_ckpt(epoch, batch, progress):
        return {
            "format": checkpoint.FORMAT, "overrides": overrides, "model": model.state_dict(),
            "rule": rule.state_dict(), "epoch": epoch, "batch": batch, "progress": progress,
            "history": history, "best": best, "rng": checkpoint.rng_state(),
        }

    def summary(status_):
        last = history[-1] if history else {}
        return {
            "status": status_, "epochs_completed": len(history), "final": last,
            "best": best, "time_s": round(time.perf_counter() - t_start, 2),
            "train_samples_per_s": round(samples_seen / train_time, 1) if train_time else None,
            "device": str(device), "history": history,
        }

    try:
        from tqdm import tqdm

        with StopFlag() as stop:
            for epoch in range(start_epoch, cfg.epochs):
                gen = torch.Generator(device=train_split.x.device).manual_seed(cfg.seed * 1_000_003 + epoch)
                model.train()
                sums = torch.zeros(3, device=device)  # loss * B, correct, samples
                first = start_batch if epoch == start_epoch else 0
                if first and partial is not None:
                    sums += torch.tensor(partial, device=device)
                bar = tqdm(total=steps, initial=first, desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="batch",
                           disable=not cfg.progress, leave=False, file=sys.stderr, dynamic_ncols=True)
                t_epoch, n_epoch = time.perf_counter(), 0
                t0 = time.perf_counter()
                for b, (x, y) in enumerate(train_split.batches(cfg.batch_size, shuffle=True, generator=gen)):
                    if b < first:
                        continue
                    x_seq = parts.encoder(x, cfg.T, time_major=parts.info.time_major)
                    if clock is not None:
                        clock.start()                 # on CUDA: waits for the data's kernels first
                    t1 = time.perf_counter()
                    model.reset()
                    loss, out = rule.train_batch(model, x_seq, y, autocast)
                    sums[0] += loss.float() * y.shape[0]
                    sums[1] += _correct(out, y)
                    sums[2] += y.shape[0]
                    n_epoch += y.shape[0]
                    if clock is not None:
                        clock.mark("other")           # after the rule's own phases; on CUDA: waits for the step
                    t2 = time.perf_counter()
                    times["data"] += t1 - t0
                    times["train_step"] += t2 - t1
                    bar.update(1)
                    if (b + 1) % SYNC_EVERY == 0 or b + 1 == steps:
                        loss_sum, correct, n = sums.tolist()
                        if not math.isfinite(loss_sum):
                            raise Diverged(f"loss became {loss_sum} at epoch {epoch + 1}, batch {b + 1}")
                        if not _weights_finite(model):
                            raise Diverged(f"weights became nan/inf at epoch {epoch + 1}, batch {b + 1}")
                        bar.set_postfix(loss=f"{loss_sum / n:.3f}", acc=f"{correct / n:.3f}",
                                        sps=f"{n_epoch / (time.perf_counter() - t_epoch):.0f}", refresh=False)
                    t0 = time.perf_counter()
                    times["logging"] += t0 - t2
                    if stop.requested:
                        t_batch = time.perf_counter()
                        checkpoint.save_atomic(make_ckpt(epoch, b + 1, sums.tolist()), ckpt_dir / "last.pt")
                        samples_seen += n_epoch
                        train_time += t_batch - t_epoch
                        bar.close()
                        raise Interrupted(f"epoch {epoch + 1}, batch {b + 1}/{steps}")
                bar.close()
                train_time += time.perf_counter() - t_epoch
                samples_seen += n_epoch
                rule.epoch_end()
                logger.scalars(rule.epoch_scalars(), epoch + 1)
                logger.images(rule.epoch_images(), epoch + 1)
                loss_sum, correct, n = sums.tolist()
                if not math.isfinite(loss_sum):
                    raise Diverged(f"loss became {loss_sum} at epoch {epoch + 1}")
                if not _weights_finite(model):
                    raise Diverged(f"weights became nan/inf at epoch {epoch + 1}")
                t0 = time.perf_counter()
                test_loss, test_acc = evaluate(parts, cfg, monitor)
                times["evaluate"] += time.perf_counter() - t0
                t0 = time.perf_counter()
                row = {"epoch": epoch + 1, "train_loss": loss_sum / n, "train_acc": correct / n,
                       "test_loss": test_loss, "test_acc": test_acc, "lr": rule.lr()}
                history.append(row)
                rates = monitor.stop()
                potentials = monitor.potentials()
                if not all(bool(torch.isfinite(v).all()) for v in potentials.values()):
                    raise Diverged(f"membrane potentials became nan/inf at epoch {epoch + 1}")
                logger.scalars({"train/loss": row["train_loss"], "train/acc": row["train_acc"],
                                "test/loss": test_loss, "test/acc": test_acc, "lr": row["lr"],
                                "perf/samples_per_s": n_epoch / max(time.perf_counter() - t_epoch, 1e-9), **rates},
                               epoch + 1)
                logger.epoch_tensors(model, potentials, monitor.rasters, epoch + 1)
                times["logging"] += time.perf_counter() - t0
                t0 = time.perf_counter()
                is_best = test_acc > best["test_acc"]
                if is_best:
                    best = {"test_acc": test_acc, "epoch": epoch + 1}
                ck = make_ckpt(epoch + 1, 0, None)
                checkpoint.save_atomic(ck, ckpt_dir / "last.pt")
                if is_best:
                    checkpoint.save_atomic(ck, ckpt_dir / "best.pt")
                _write_json(metrics_path, summary("running"))
                times["checkpoint"] += time.perf_counter() - t0
                line = (f"epoch {epoch + 1}/{cfg.epochs}: train loss {row['train_loss']:.4f} acc {row['train_acc']:.2%}"
                        f" | test loss {test_loss:.4f} acc {test_acc:.2%}")
                tqdm.write(line, file=sys.stderr)
                log.info(line)
                if stop.requested:
                    raise Interrupted(f"after epoch {epoch + 1}")
        status = "completed"
    except Interrupted as e:
        status = "interrupted"
        _write_json(metrics_path, summary(status))
        logger.close()
        log.warning("interrupted (%s); last checkpoint: %s", e, ckpt_dir / "last.pt")
        raise UserError(
            f"interrupted ({e}); checkpoint saved at {ckpt_dir / 'last.pt'}; continue with: dendsn train resume={run_dir}"
        ) from None
    except Diverged as e:
        status = "diverged"
        _write_json(metrics_path, summary(status))
        logger.close()
        kept = f"the last good checkpoint is kept at {ckpt_dir / 'last.pt'}" if (ckpt_dir / "last.pt").exists() else "no epoch finished, so no checkpoint was written"
        log.error("%s; stopped (%s)", e, kept)
        raise UserError(f"{e}; stopped ({kept}); lower optim.lr or set learning.grad_clip") from None
    finally:
        for h in monitor.handles:
            h.remove()

    result = summary(status)
    last = history[-1]
    logger.hparams(hparams_of(cfg, choices or {}),
                   {"hparam/test_acc": last["test_acc"], "hparam/best_test_acc": best["test_acc"],
                    "hparam/test_loss": last["test_loss"]})
    logger.close()
    _write_json(metrics_path, result)
    if cfg.profile:
        total = sum(times.values())
        parts_txt = ", ".join(f"{k} {v:.2f}s ({v / total:.0%})" for k, v in times.items())
        phases_txt = ", ".join(f"{k} {v:.2f}s" for k, v in clock.times.items())
        print(f"profile: {parts_txt} | train_step = {phases_txt}", file=sys.stderr)
    sps = result["train_samples_per_s"]
    log.info("%s: %d epochs in %.1fs, test acc %.4f (best %.4f at epoch %d)", status, len(history),
             result["time_s"], last["test_acc"], best["test_acc"], best["epoch"])
    print(f"dendsn: {len(history)} epochs in {result['time_s']:.1f}s | test acc {last['test_acc']:.2%} "
          f"(best {best['test_acc']:.2%} @ epoch {best['epoch']}) | {sps or 0:.0f} train samples/s | {run_dir}")
    return result


def evaluate_checkpoint(cfg: DictConfig, path: Path, ck: dict) -> dict:
    """Build the model of ``cfg``, load ``ck``'s weights, and evaluate on the test split."""
    device = select_device(cfg.device)
    seed_everything(cfg.seed)
    parts = build(cfg, device)
    checkpoint.load_model_state(parts.model, ck["model"], path, "ckpt")
    loss, acc = evaluate(parts, cfg)
    return {"test_loss": loss, "test_acc": acc, "n_test": len(parts.test), "epoch": ck.get("epoch")}

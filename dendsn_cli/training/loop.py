"""The training loop of `dendsn train`, as named phases:

    setup     device, seed, the parts (`build`), the rule's optimizer and context, `init_rate`
    resume    a checkpoint's weights, optimizer, random state, position and history (``resume=``)
    per epoch:
      train_epoch     for each batch: encode -> reset state -> rule.train_batch (forward, loss, update)
      evaluate_epoch  the validation and test splits (inference mode); the figures start drawing
      end of epoch    the callbacks (`training.callbacks`): TensorBoard, figures, checkpoints/last.pt (+ best.pt,
                      chosen on validation accuracy, never on test data), metrics.json, the epoch's line,
                      warnings, stop request, early stop
    finish    hparams + final metrics, profile, one summary line

Metrics are summed on the device and read back only every `SYNC_EVERY` batches (progress bar, NaN
check), never once per batch. Ctrl-C / SIGTERM set a flag; the loop stops after the current batch
and saves a checkpoint that holds the position inside the epoch, so `resume=` continues exactly.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from ..config import choice_name
from ..errors import UserError, shorten
from ..learning.base import PhaseClock, RuleContext
from ..learning.local import LocalRule
from ..runs import checkpoint
from ..runs import distributed as dist
from .build import (
    Parts,
    build,
    calibrate,
    instantiate_group,
    named_layer_parameters,
    seed_everything,
    select_device,
    tune_cpu_allocator,
)
from .callbacks import CALLBACKS, Diverged, Interrupted, write_json
from .evaluate import count_correct, evaluate, tallies_of
from .figures import Seen
from .monitor import Monitor, grad_norms, weights_finite
from .tb import SYNC_EVERY, RankLogger, hparams_of

log = logging.getLogger("dendsn")  # records go to <run dir>/train.log (conf/hydra/job_logging/dendsn.yaml)


@dataclass
class Run:
    """The state of one training run, shared by the phases and the callbacks."""

    cfg: DictConfig
    run_dir: Path
    overrides: list
    choices: dict
    stop: object  # the process's `StopFlag`
    device: torch.device
    parts: Parts
    context: RuleContext
    steps: int  # batches per epoch
    t_start: float = field(default_factory=time.perf_counter)
    n_params: int = 0
    autocast: object = None
    logger: object = None
    monitor: Optional[Monitor] = None
    trainer: Optional[torch.nn.Module] = None  # the model, or DistributedDataParallel's wrapper under torchrun
    named_params: dict = field(default_factory=dict)
    tally: object = None
    tally_names: tuple = ()
    init_line: str = ""  # init_rate's calibration, as the start line reports it
    log_every: int = SYNC_EVERY  # logger.log_every_n_steps
    times: dict = field(
        default_factory=lambda: dict.fromkeys(("data", "train_step", "evaluate", "logging", "checkpoint"), 0.0)
    )
    # progress
    start_epoch: int = 0
    start_batch: int = 0
    partial: Optional[list] = None  # a resumed epoch's sums so far
    history: list = field(default_factory=list)
    best: dict = field(default_factory=lambda: {"epoch": 0})
    stale: int = 0  # epochs since the selected metric last improved
    early_stopped: bool = False
    status: str = "running"
    samples_seen: int = 0
    train_time: float = 0.0
    result: dict = field(default_factory=dict)
    # the epoch at hand
    epoch: int = 0
    sums: Optional[torch.Tensor] = None
    n_epoch: int = 0
    t_step: float = 0.0  # when the batch at hand entered the rule
    lr_now: float = math.nan  # the rate the epoch's last step applied
    epoch_train_s: float = 0.0
    rule_scalars: dict = field(default_factory=dict)
    row: dict = field(default_factory=dict)
    rates: dict = field(default_factory=dict)
    neuron_rates: dict = field(default_factory=dict)
    potentials: dict = field(default_factory=dict)
    drawn: object = None  # the figures being drawn for this epoch (`TensorBoardLogger.draw_figures`)

    @property
    def main(self) -> bool:
        return dist.is_main()

    @property
    def ckpt_dir(self) -> Path:
        return self.run_dir / "checkpoints"

    @property
    def metrics_path(self) -> Path:
        return self.run_dir / "metrics.json"

    @property
    def select_on(self) -> str:
        return "val_acc" if self.parts.val is not None else "train_acc"

    def save(self, obj: dict, path: Path) -> None:
        if self.main:  # rank 0 writes the files
            checkpoint.save_atomic(obj, path)

    def write_json(self, path: Path, obj: dict) -> None:
        if self.main:
            write_json(path, obj)

    def checkpoint(self, epoch: int, batch: int, progress) -> dict:
        return {
            "format": checkpoint.FORMAT,
            "overrides": self.overrides,
            "model": self.parts.model.state_dict(),
            "rule": self.parts.rule.state_dict(),
            "epoch": epoch,
            "batch": batch,
            "batch_size": self.cfg.batch_size,
            "progress": progress,
            "history": self.history,
            "best": self.best,
            "rng": checkpoint.rng_state(),
        }

    def summary(self, status: str) -> dict:
        last = self.history[-1] if self.history else {}
        return {
            "status": status,
            "epochs_completed": len(self.history),
            "final": last,
            "best": self.best,
            "selected_on": self.select_on,
            "early_stopped": self.early_stopped,
            "time_s": round(time.perf_counter() - self.t_start, 2),
            "train_samples_per_s": round(self.samples_seen / self.train_time, 1) if self.train_time else None,
            "device": str(self.device),
            "params": self.n_params,
            "history": self.history,
        }

    def hparams(self) -> tuple:
        return hparams_of(self.cfg, self.choices or {}, self.overrides)


def fit(cfg: DictConfig, run_dir: Path, overrides: list, choices: Optional[dict], stop) -> dict:
    """Train per ``cfg`` into ``run_dir``: setup, resume, then per epoch train, evaluate, the end-of-epoch
    callbacks (`training.callbacks.CALLBACKS`, in order), until the last epoch or a stop; then finish."""
    run = setup(cfg, run_dir, overrides, choices, stop)
    if cfg.resume:
        resume(run)
    start(run)
    try:
        if dist.agree(stop.requested, run.device):
            raise Interrupted("before the first batch")
        for run.epoch in range(run.start_epoch, cfg.epochs):
            train_epoch(run)
            evaluate_epoch(run)
            if end_epoch(run):
                break
        run.status = "completed"
    except (Interrupted, KeyboardInterrupt) as e:  # KeyboardInterrupt: a second Ctrl-C stopped the run at once
        stopped(run, e)
    except Diverged as e:
        diverged(run, e)
    except BaseException:
        end_early(run, "failed")  # whatever else ends the run: metrics.json says so
        raise
    finally:
        run.monitor.remove()
    return finish(run)


# --------------------------------------------------------------------------- setup


def setup(cfg: DictConfig, run_dir: Path, overrides: list, choices: Optional[dict], stop) -> Run:
    """The parts, the rule's optimizer and context, `init_rate`'s calibration and AMP."""
    t_start = time.perf_counter()
    device = dist.device_for(select_device(cfg.device))
    if device.type == "cpu":
        tune_cpu_allocator()
    seed_everything(cfg.seed)
    parts = build(cfg, device)
    if dist.active():
        check_distributed(cfg, parts)
    steps = math.ceil(len(parts.train) / cfg.batch_size)
    context = RuleContext(
        decoder=parts.decoder,
        lr_decay_steps=cfg.get("lr_decay_epochs", 100.0) * steps,
        clock=PhaseClock(device) if cfg.profile else None,
    )
    parts.rule.setup(parts.model, instantiate_group(cfg.optim, "optim"), cfg.epochs * steps, cfg.lr_schedule, context)
    run = Run(cfg, run_dir, overrides, choices, stop, device, parts, context, steps, t_start=t_start)
    run.n_params = sum(p.numel() for p in parts.model.parameters())
    event_based = bool(getattr(parts.model, "event_based", False))
    if cfg.init_rate is not None and not cfg.resume and not event_based:  # an event network starts as the paper's
        run.init_line = calibrate(parts, cfg)
    if cfg.amp != "none":
        if device.type == "cuda":
            run.autocast = torch.autocast("cuda", dtype=torch.bfloat16 if cfg.amp == "bf16" else torch.float16)
        else:
            print(f"dendsn: amp={cfg.amp} needs CUDA; running in float32 on {device}", file=sys.stderr)
    return run


def check_distributed(cfg: DictConfig, parts: Parts) -> None:
    """What torchrun's processes cannot share: a local rule, a batch or a split smaller than the world."""
    if isinstance(parts.rule, LocalRule):
        raise UserError(
            f"learning={choice_name(cfg, 'learning')} updates weights by a local rule, which torchrun's "
            "processes would each apply to their own shard (the weights would drift apart): train it in "
            "one process, or use a gradient rule (learning=bptt or exact) under torchrun"
        )
    if cfg.batch_size < dist.world_size():
        raise UserError(
            f"batch_size={cfg.batch_size} is the global batch, split over {dist.world_size()} processes: "
            f"it must be at least {dist.world_size()}"
        )
    for name, split in (("validation", parts.val), ("test", parts.test)):
        if split is not None and len(split) < dist.world_size():
            raise UserError(
                f"the {name} split has {len(split)} samples, fewer than the {dist.world_size()} processes "
                "that evaluate it in parts; use more samples (dataset.val, dataset.n_test) or fewer processes"
            )


def resume(run: Run) -> None:
    """Continue ``cfg.resume``'s run: weights, optimizer and schedule, random state, position, history."""
    cfg, rule = run.cfg, run.parts.rule
    path = checkpoint.find(cfg.resume, "resume")
    ck = checkpoint.load(path, "resume")
    saved_bs = ck.get("batch_size")
    if ck["batch"] and isinstance(saved_bs, int) and saved_bs != cfg.batch_size:
        raise UserError(
            f"resume={shorten(path)}: the run stopped inside epoch {ck['epoch'] + 1}, after {ck['batch']} "
            f"batches of batch_size={saved_bs}; with batch_size={cfg.batch_size} that position would skip "
            f"or repeat samples: resume with batch_size={saved_bs} (a new batch size can start with a new run)"
        )
    checkpoint.load_model_state(run.parts.model, ck["model"], path, "resume")
    try:
        changed = rule.load_state_dict(ck["rule"]) or []
    except UserError as e:
        raise UserError(f"resume={shorten(path)}: {e}") from None
    if changed:
        print(f"dendsn: resume applies {', '.join(changed)}", file=sys.stderr)
        log.info("resume applies %s", ", ".join(changed))
    if rule.scheduler is not None and hasattr(rule.scheduler, "T_max"):
        rule.scheduler.T_max = max(1, cfg.epochs * run.steps)  # resumed with more epochs: stretch the schedule
    checkpoint.set_rng_state(ck["rng"])
    run.start_epoch, run.start_batch = ck["epoch"], ck["batch"]
    run.history, run.best, run.partial = ck["history"], ck["best"], ck.get("progress")
    run.stale = len(run.history) - int(run.best.get("epoch", 0)) if run.history else 0
    if run.start_epoch >= cfg.epochs:
        raise UserError(
            f"resume={cfg.resume}: that run already finished {run.start_epoch} epochs; raise epochs= to train further"
        )
    print(f"dendsn: resuming {path} at epoch {run.start_epoch + 1}, batch {run.start_batch}", file=sys.stderr)
    log.info("resuming %s at epoch %d, batch %d", path, run.start_epoch + 1, run.start_batch)


def start(run: Run) -> None:
    """The start line, TensorBoard, the monitor's hooks, the (distributed) trainer."""
    cfg, parts = run.cfg, run.parts
    n_val = len(parts.val) if parts.val else 0
    if not cfg.resume:
        log.info(
            "training on %s: %d parameters, %d train / %d validation / %d test samples, %d batches per epoch",
            run.device,
            run.n_params,
            len(parts.train),
            n_val,
            len(parts.test),
            run.steps,
        )
    shown = shown_path(run.run_dir)
    print(
        f"dendsn: {shown} | {run.device} | {run.n_params:,} parameters | "
        f"{len(parts.train)} train / {n_val} val / {len(parts.test)} test | "
        f"watch: tensorboard --logdir {shown}",
        file=sys.stderr,
    )
    if run.init_line:
        print(f"dendsn: init_rate={cfg.init_rate}: {run.init_line}", file=sys.stderr)
        log.info("init_rate=%s: %s", cfg.init_rate, run.init_line)
    logger = instantiate_group(cfg.logger, "logger")
    run.logger = logger if run.main else RankLogger(logger)  # under torchrun only rank 0 writes TensorBoard
    run.logger.open(str(run.run_dir), purge_step=run.start_epoch + 1 if cfg.resume else None)
    if not cfg.resume:
        run.logger.config(OmegaConf.to_yaml(cfg, resolve=True), run.overrides)
    event_based = bool(getattr(parts.model, "event_based", False))
    run.monitor = Monitor(parts.layers, events=parts.model if event_based else None, figures=run.logger.figure_specs)
    run.tally, run.tally_names = tallies_of(parts.decoder)
    run.named_params = named_layer_parameters(parts.model, parts.layers)
    run.log_every = max(1, int(getattr(run.logger, "log_every_n_steps", SYNC_EVERY) or SYNC_EVERY))
    run.trainer = dist.wrap(parts.model, run.device) or parts.model  # DistributedDataParallel under torchrun
    if dist.rank() > 0:  # noise inside a step (Poisson codes, dropout): each
        torch.manual_seed(cfg.seed * 1_000_003 + 7919 * dist.rank())  # process draws its own, rank 0 the run's


# --------------------------------------------------------------------------- train


def train_epoch(run: Run) -> None:
    """One pass over the training split (from the saved position when resumed), then the rule's epoch end."""
    cfg, parts, epoch = run.cfg, run.parts, run.epoch
    gen = torch.Generator(device=parts.train.x.device).manual_seed(cfg.seed * 1_000_003 + epoch)
    parts.model.train()
    parts.encoder.train()
    run.sums = torch.zeros(3 + len(run.tally_names), device=run.device)  # loss * B, correct, samples, tallies
    first = run.start_batch if epoch == run.start_epoch else 0
    if first and run.partial is not None and run.main:  # (the saved sums are already over all ranks)
        run.sums += torch.tensor(run.partial, device=run.device)
    sized = terminal_sized()  # False: a pipe, or a terminal that reports 0 x 0
    bar = tqdm(
        total=run.steps,
        initial=first,
        desc=f"epoch {epoch + 1}/{cfg.epochs}",
        unit="batch",
        disable=not cfg.progress,
        leave=False,
        file=sys.stderr,
        dynamic_ncols=sized,
        ncols=None if sized else 80,
        nrows=None if sized else 20,
        mininterval=0.2,
    )
    t_epoch, run.n_epoch, t_train = time.perf_counter(), 0, 0.0
    t0 = time.perf_counter()
    for b, (x, y) in enumerate(parts.train.batches(cfg.batch_size, shuffle=True, generator=gen)):
        if b < first:
            continue
        loss = train_step(run, x, y)
        t2 = time.perf_counter()
        run.times["data"] += run.t_step - t0
        run.times["train_step"] += t2 - run.t_step
        t_train += t2 - t0
        bar.update(1)
        log_batch(run, bar, b, first, loss, t_train)
        t0 = time.perf_counter()
        run.times["logging"] += t0 - t2
        if dist.agree(run.stop.requested, run.device):  # under torchrun every rank stops at the same batch
            t_batch = time.perf_counter()
            run.save(run.checkpoint(epoch, b + 1, dist.reduce_sum(run.sums).tolist()), run.ckpt_dir / "last.pt")
            run.samples_seen += dist.total(run.n_epoch, run.device)
            run.train_time += t_batch - t_epoch
            bar.close()
            raise Interrupted(f"epoch {epoch + 1}, batch {b + 1}/{run.steps}")
    bar.close()
    run.lr_now = parts.rule.lr()  # the rate the epoch's last step applied (before epoch_end)
    run.epoch_train_s = time.perf_counter() - t_epoch
    run.train_time += run.epoch_train_s
    run.n_epoch = dist.total(run.n_epoch, run.device)  # under torchrun: every rank's samples
    run.samples_seen += run.n_epoch
    end_training(run)


def train_step(run: Run, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """One batch: this rank's part, encode, reset, the rule's step; the sums on the device."""
    parts, clock = run.parts, run.context.clock
    x, y, counted, run.context.loss_scale = dist.shard(x, y)  # under torchrun: this rank's part
    x_seq = parts.encoder(x, run.cfg.T, time_major=parts.info.time_major)
    if clock is not None:
        clock.start()  # on CUDA: waits for the data's kernels first
    run.t_step = time.perf_counter()
    parts.model.reset()
    loss, out = parts.rule.train_batch(run.trainer, x_seq, y, run.autocast)
    if counted:
        run.sums[0] += loss.float() * y.shape[0]
        run.sums[1] += count_correct(parts, out, y)
        run.sums[2] += y.shape[0]
        if run.tally_names:
            run.sums[3:] += run.tally(out, y)
    run.n_epoch += counted
    if clock is not None:
        clock.mark("other")  # after the rule's own phases; on CUDA: waits for the step
    return loss


def log_batch(run: Run, bar, b: int, first: int, loss: torch.Tensor, t_train: float) -> None:
    """Every few batches: the batch loss and gradient norms (TensorBoard), the NaN checks, the progress bar."""
    log_every = run.log_every
    if not (b == first or (b + 1) % math.gcd(SYNC_EVERY, log_every) == 0 or b + 1 == run.steps):
        return
    epoch = run.epoch
    if (b + 1) % log_every == 0:  # the loss of this batch and each layer's gradient norm
        norms = grad_norms(run.named_params)
        values = torch.stack([loss.detach().float(), *norms.values()]).tolist()
        run.logger.scalars({"train/batch_loss": values[0], **dict(zip(norms, values[1:]))}, epoch * run.steps + b + 1)
    loss_sum, correct, n, *_ = dist.reduce_sum(run.sums).tolist()
    if not math.isfinite(loss_sum):
        raise Diverged(f"loss became {loss_sum} at epoch {epoch + 1}, batch {b + 1}")
    if not weights_finite(run.parts.model):
        raise Diverged(f"weights became nan/inf at epoch {epoch + 1}, batch {b + 1}")
    bar.set_postfix(
        {
            "loss": f"{loss_sum / n:.3f}",
            "acc": f"{correct / n:.3f}",
            "samples/s": f"{run.n_epoch * dist.world_size() / max(t_train, 1e-9):.0f}",
        },
        refresh=b == first,
    )


def end_training(run: Run) -> None:
    """The rule's epoch end (its scalars and images to TensorBoard); the epoch's training loss, checked."""
    rule, epoch = run.parts.rule, run.epoch
    rule.epoch_end()
    run.rule_scalars = rule.epoch_scalars()
    run.logger.scalars(run.rule_scalars, epoch + 1)
    run.logger.images(rule.epoch_images(), epoch + 1)
    loss_sum, correct, n, *train_tallies = dist.reduce_sum(run.sums).tolist()
    if not math.isfinite(loss_sum):
        raise Diverged(f"loss became {loss_sum} at epoch {epoch + 1}")
    if not weights_finite(run.parts.model):
        raise Diverged(f"weights became nan/inf at epoch {epoch + 1}")
    run.row = {"epoch": epoch + 1, "train_loss": loss_sum / n, "train_acc": correct / n}
    run.row.update({f"train_{k}": v / n for k, v in zip(run.tally_names, train_tallies)})


# --------------------------------------------------------------------------- evaluate


def evaluate_epoch(run: Run) -> None:
    """The validation split (watched: rates, the figures' records, confusion), then the test split while
    the figures draw; the row joins the history; potentials checked."""
    cfg, parts, row = run.cfg, run.parts, run.row
    figures = run.logger.wants_figures(run.epoch + 1, run.epoch + 1 == cfg.epochs)
    t0 = time.perf_counter()
    n_classes = parts.info.n_classes
    confusion = torch.zeros(n_classes, n_classes, dtype=torch.long, device=run.device) if figures else None
    watched = parts.val if parts.val is not None else parts.test  # rates, pictures, confusion
    extra: dict = {}
    loss_acc = evaluate(parts, cfg, watched, run.monitor, record=figures, confusion=confusion, extra=extra)
    run.rates, run.neuron_rates = run.monitor.stop(), run.monitor.neuron_rates()
    if figures:
        seen = Seen(
            dict(run.monitor.records),
            run.neuron_rates,
            confusion.cpu().clone() if confusion is not None else None,
            "validation" if parts.val is not None else "test",
        )
        run.drawn = run.logger.draw_figures(seen)
    if parts.val is not None:
        row["val_loss"], row["val_acc"] = loss_acc
        row.update({f"val_{k}": v for k, v in extra.items()})
        extra = {}
        loss_acc = evaluate(parts, cfg, parts.test, extra=extra)
    row["test_loss"], row["test_acc"] = loss_acc
    row.update({f"test_{k}": v for k, v in extra.items()})
    row["lr"] = run.lr_now
    run.times["evaluate"] += time.perf_counter() - t0
    t0 = time.perf_counter()
    run.history.append(row)
    run.potentials = run.monitor.potentials()
    if dist.agree(not all(bool(torch.isfinite(v).all()) for v in run.potentials.values()), run.device):
        raise Diverged(f"membrane potentials became nan/inf at epoch {run.epoch + 1}")
    run.times["logging"] += time.perf_counter() - t0


def end_epoch(run: Run) -> bool:
    """The end-of-epoch callbacks in order, each timed into its part of the profile; True: stop training."""
    done = False
    for callback in CALLBACKS:
        t0 = time.perf_counter()
        done = bool(callback.epoch_end(run)) or done
        if callback.bucket is not None:
            run.times[callback.bucket] += time.perf_counter() - t0
    return done


# --------------------------------------------------------------------------- finish


def finish(run: Run) -> dict:
    """After the last epoch: every callback's `finish` (hparams, metrics.json, profile, the summary line)."""
    run.result = run.summary(run.status)
    for callback in CALLBACKS:
        callback.finish(run)
    return run.result


def end_early(run: Run, status: str) -> None:
    """A run that ends before its last epoch: metrics.json says how, TensorBoard is closed."""
    run.status = status
    run.write_json(run.metrics_path, run.summary(status))
    run.logger.close()


def stopped(run: Run, e: BaseException) -> None:
    """Ctrl-C / SIGTERM: one line that says what was kept and how to continue."""
    forced = isinstance(e, KeyboardInterrupt)
    end_early(run, "interrupted")
    last = run.ckpt_dir / "last.pt"
    what = "interrupted at once (a second Ctrl-C)" if forced else f"interrupted ({e})"
    log.warning("%s; last checkpoint: %s", what, last if last.exists() else "none")
    if not last.exists():
        lost = "before the first checkpoint: nothing was saved" if forced else ": nothing was trained or saved"
        raise UserError(f"{what}{' ' if forced else ''}{lost}; run the same command again") from None
    kept = f"the last checkpoint ({last}) is kept" if forced else f"checkpoint saved at {last}"
    raise UserError(f"{what}; {kept}; continue with: dendsn train resume={run.run_dir}") from None


def diverged(run: Run, e: Diverged) -> None:
    end_early(run, "diverged")
    last = run.ckpt_dir / "last.pt"
    kept = (
        f"the last good checkpoint is kept at {last}"
        if last.exists()
        else "no epoch finished, so no checkpoint was written"
    )
    log.error("%s; stopped (%s)", e, kept)
    raise UserError(f"{e}; stopped ({kept}); lower optim.lr or set learning.grad_clip") from None


def shown_path(path: Path) -> str:
    """``path`` relative to the working directory when it lies inside it (as a user typed it), else absolute."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def terminal_sized() -> bool:
    """Does stderr's terminal report a size? Not on a pipe, nor on a terminal that says 0 columns or rows
    (some CI consoles and serial lines): tqdm then gets a fixed 80 x 20 (with 0 rows it draws nothing)."""
    try:
        size = os.get_terminal_size(sys.stderr.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return size.columns > 0 and size.lines > 0


def quietly(fn, *args):
    """``fn(*args)`` with stdout and stderr sent to /dev/null (the ranks after 0 under torchrun)."""
    with open(os.devnull, "w") as null, contextlib.redirect_stdout(null), contextlib.redirect_stderr(null):
        return fn(*args)

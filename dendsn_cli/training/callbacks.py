"""The end-of-epoch effects of the loop, one `Callback` each, run in the order of `CALLBACKS`.

After each epoch's evaluation the loop calls every callback's `epoch_end(run)` (``run``: the loop's
`Run` state, with the epoch's ``row``, rates and potentials); after the last epoch every `finish(run)`.
A callback that returns True from `epoch_end` ends the training (early stop). ``bucket`` names the part
of ``profile=true``'s breakdown its time counts to.

    TensorBoardScalars  losses, accuracies, lr, throughput, rates, never-fired fractions; hparams at the end
    Histograms          weight and potential histograms (logger.histograms)
    Figures             the figures drawn for this epoch (`training.figures`), written in order
    Checkpoints         checkpoints/last.pt every epoch, best.pt when the selected metric improved
    MetricsFile         metrics.json (status running; the final summary at the end)
    ProgressLine        "epoch i/n: train loss ... | test loss ..." on the terminal and in train.log
    EventsWarning       the event network: trials that ran out of network.K events
    RateWarnings        after the first epoch: every silent or saturated layer
    StopRequest         Ctrl-C / SIGTERM between epochs: stop with a checkpoint
    EarlyStop           early_stop.patience epochs without improvement: end the training
    Profile             profile=true: the time of each part of the run
    SummaryLine         the one-line summary at the end
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Optional

from tqdm import tqdm

from ..runs import distributed as dist

log = logging.getLogger("dendsn")  # records go to <run dir>/train.log (conf/hydra/job_logging/dendsn.yaml)


class Interrupted(Exception):
    """The run was stopped by Ctrl-C / SIGTERM after saving."""


class Diverged(Exception):
    """The loss became NaN or infinite."""


def write_json(path: Path, obj: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2))
    os.replace(tmp, path)


def duration(seconds):
    """'2.31s' from a second up, '4.12ms' below: a short phase never prints as 0.00s."""
    return f"{seconds:.2f}s" if seconds >= 1 else f"{seconds * 1000:.3g}ms"


def warn(text: str) -> None:
    tqdm.write(f"dendsn: warning: {text}", file=sys.stderr)
    log.warning(text)


class Callback:
    bucket: Optional[str] = None  # profile=true: "logging" or "checkpoint" (None: not counted)

    def epoch_end(self, run) -> Optional[bool]:
        """After the epoch's evaluation; True ends the training."""

    def finish(self, run) -> None:
        """Once, after the last epoch (not after a stop by signal, divergence or error)."""


class TensorBoardScalars(Callback):
    bucket = "logging"

    def epoch_end(self, run):
        row, tally_names = run.row, run.tally_names
        scalars = {
            "train/loss": row["train_loss"],
            "train/acc": row["train_acc"],
            "test/loss": row["test_loss"],
            "test/acc": row["test_acc"],
            "lr": row["lr"],
            "perf/samples_per_s": run.n_epoch / max(run.epoch_train_s, 1e-9),
            **run.rates,
        }
        if "val_acc" in row:
            scalars.update({"val/loss": row["val_loss"], "val/acc": row["val_acc"]})
        for k in tally_names:  # e.g. test/acc_ordinary
            scalars.update(
                {f"{split}/{k}": row[f"{split}_{k}"] for split in ("train", "val", "test") if f"{split}_{k}" in row}
            )
        scalars.update({f"never_fired/{k}": float((r == 0).float().mean()) for k, r in run.neuron_rates.items()})
        run.logger.scalars(scalars, run.epoch + 1)

    def finish(self, run):
        """hparams + the final metrics (HParams tab), then the event file is closed."""
        best, last = run.best, run.history[-1]
        metrics = {
            "hparam/test_acc": best.get("test_acc", last["test_acc"]),
            "hparam/final_test_acc": last["test_acc"],
            "hparam/test_loss": best.get("test_loss", last["test_loss"]),
        }
        if "val_acc" in last:
            metrics.update({"hparam/val_acc": best["val_acc"], "hparam/val_loss": best["val_loss"]})
        hp, given = run.hparams()
        run.logger.hparams(hp, metrics, given)
        run.logger.close()


class Histograms(Callback):
    bucket = "logging"

    def epoch_end(self, run):
        run.logger.epoch_tensors(run.named_params, run.potentials, run.epoch + 1)


class Figures(Callback):
    bucket = "logging"

    def epoch_end(self, run):
        if run.drawn is not None:
            drawn, run.drawn = run.drawn, None
            run.logger.add_figures(drawn, run.epoch + 1)


class Checkpoints(Callback):
    bucket = "checkpoint"

    def epoch_end(self, run):
        row, select_on = run.row, run.select_on
        previous = run.best.get(select_on, -1.0)
        is_best = row[select_on] > previous
        run.stale = 0 if row[select_on] > previous + run.cfg.early_stop.min_delta else run.stale + 1
        if is_best:
            run.best = {
                "epoch": run.epoch + 1,
                **{k: row[k] for k in ("val_acc", "val_loss", "test_acc", "test_loss", "train_acc") if k in row},
            }
        ck = run.checkpoint(run.epoch + 1, 0, None)
        run.save(ck, run.ckpt_dir / "last.pt")
        if is_best:
            run.save(ck, run.ckpt_dir / "best.pt")


class MetricsFile(Callback):
    bucket = "checkpoint"

    def epoch_end(self, run):
        run.write_json(run.metrics_path, run.summary("running"))

    def finish(self, run):
        run.write_json(run.metrics_path, run.result)


class ProgressLine(Callback):
    def epoch_end(self, run):
        row, epoch, epochs = run.row, run.epoch, run.cfg.epochs
        val_txt = f" | val loss {row['val_loss']:.4f} acc {row['val_acc']:.2%}" if "val_acc" in row else ""
        line = (
            f"epoch {epoch + 1}/{epochs}: train loss {row['train_loss']:.4f} acc {row['train_acc']:.2%}"
            f"{val_txt} | test loss {row['test_loss']:.4f} acc {row['test_acc']:.2%}"
        )
        if "test_acc_ordinary" in row:
            line += f" ({row['test_acc_ordinary']:.2%} by ordinary spikes alone)"
        tqdm.write(line, file=sys.stderr)
        log.info(line)


class EventsWarning(Callback):
    def epoch_end(self, run):
        exhausted = run.rates.get("events/exhausted", 0.0) + run.rule_scalars.get("events/train_exhausted", 0.0)
        if exhausted:
            model = run.parts.model
            warn(
                f"{int(exhausted)} trials of epoch {run.epoch + 1} ran out of network.K={model.K} events before "
                f"the trial end T={model.T:g}: their later spikes are missing (events/exhausted in "
                f"TensorBoard); raise network.K"
            )


def rate_warnings(rates: dict, silent: float = 1e-4, saturated: float = 0.9) -> list:
    """One line per layer whose mean rate is below ``silent`` or above ``saturated``, with what to try."""
    out = []
    for tag, r in rates.items():
        if not tag.startswith("rate/"):
            continue
        name = tag.split("/", 1)[1]
        if r < silent:
            out.append(
                f"{name} is silent after the first epoch (mean rate {r:.2g} spikes/step): its input never "
                f"reaches the threshold; try init_rate=0.05, a larger optim.lr, or a lower neuron.v_threshold"
            )
        elif r > saturated:
            out.append(
                f"{name} is saturated after the first epoch (mean rate {r:.2f} spikes/step): it fires almost "
                f"every step and passes no information; try a smaller init_rate, optim.lr or a higher neuron.v_threshold"
            )
    return out


class RateWarnings(Callback):
    def epoch_end(self, run):
        if run.epoch == 0:
            for warning in rate_warnings(run.rates):
                warn(warning)


class StopRequest(Callback):
    def epoch_end(self, run):
        if dist.agree(run.stop.requested, run.device) and run.epoch + 1 < run.cfg.epochs:  # after the last: complete
            raise Interrupted(f"after epoch {run.epoch + 1}")


class EarlyStop(Callback):
    def epoch_end(self, run):
        early, epoch = run.cfg.early_stop, run.epoch
        if early.patience is None or run.stale < early.patience or epoch + 1 >= run.cfg.epochs:
            return False
        run.early_stopped = True
        msg = (
            f"early stop after epoch {epoch + 1}: {run.select_on.replace('_', ' ')} has not improved for "
            f"{early.patience} epoch{'s' if early.patience != 1 else ''} (best at epoch {run.best['epoch']})"
        )
        tqdm.write(f"dendsn: {msg}", file=sys.stderr)
        log.info(msg)
        return True


class Profile(Callback):
    def finish(self, run):
        if not run.cfg.profile:
            return
        total = sum(run.times.values())
        parts_txt = ", ".join(f"{k} {duration(v)} ({v / total:.0%})" for k, v in run.times.items())
        phases_txt = ", ".join(f"{k} {duration(v)}" for k, v in run.context.clock.times.items())
        print(f"profile: {parts_txt} | train_step = {phases_txt}", file=sys.stderr)


class SummaryLine(Callback):
    def finish(self, run):
        result, best, last, n_ep = run.result, run.best, run.history[-1], len(run.history)
        sps = result["train_samples_per_s"]
        chosen = (
            f"best val acc {best['val_acc']:.2%} @ epoch {best['epoch']}, test acc there {best['test_acc']:.2%}"
            if "val_acc" in best
            else f"best train acc {best.get('train_acc', 0):.2%} @ epoch {best['epoch']}, "
            f"test acc there {best.get('test_acc', 0):.2%}"
        )
        log.info(
            "%s: %d epochs in %.1fs, test acc %.4f (%s)", run.status, n_ep, result["time_s"], last["test_acc"], chosen
        )
        print(
            f"dendsn: {n_ep} epoch{'s' if n_ep != 1 else ''} in {result['time_s']:.1f}s | test acc "
            f"{last['test_acc']:.2%} ({chosen}) | {sps or 0:.0f} train samples/s | {run.run_dir}"
        )


CALLBACKS = [
    TensorBoardScalars(),
    Histograms(),
    Figures(),
    Checkpoints(),
    MetricsFile(),
    ProgressLine(),
    EventsWarning(),
    RateWarnings(),
    StopRequest(),
    EarlyStop(),
    Profile(),
    SummaryLine(),
]

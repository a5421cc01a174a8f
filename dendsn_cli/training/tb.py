"""TensorBoard logging of a run: everything a researcher wants to look at, per epoch.

Every tag names a layer the same way: ``layer1``, ``layer2``, ..., ``readout`` (the spiking layers in
order; a synapse and what sits between it and its neurons belong to that neuron's layer).

Tags:
    train/loss, train/acc, val/loss, val/acc, test/loss, test/acc    scalars per epoch
    lr                                 the learning rate (a local rule: the rate it applies) at the epoch's last step
    perf/samples_per_s                 training throughput of the epoch (the terminal's figure)
    rate/<layer>, never_fired/<layer>  mean firing rate on the validation split; fraction of silent neurons
    train/batch_loss, grad_norm/<layer>  every ``log_every_n_steps`` training steps (x = global step)
    weights/<layer>/<param>            weight / bias histograms (``histograms``)
    potential/<layer>/v, .../v_dend    soma and compartment potentials after the last evaluation batch
    raster/<layer>                     spike raster of 3 validation samples (figure: time x neuron)
    raster/network                     the event network (learning=exact): every layer's spikes in continuous time
    <split>/acc_ordinary               the event network: accuracy by ordinary output spikes alone (no pseudospikes)
    spikes_per_neuron/<layer>          the event network: mean ordinary spikes per neuron and trial
    events/used_mean, used_max, K, exhausted   the event network: events per trial vs the bound K; trials cut at K
    events/train_exhausted, train_used_max     the same over the epoch's training batches
    traces/<layer>                     soma potential, threshold and spikes of 4 neurons; for dendritic
                                       layers every compartment's potential of the same neurons
    rates/<layer>                      histogram of per-neuron firing rates, fraction never fired
    confusion/validation               confusion matrix of the validation split
    <rule's tags>                      a learning rule's `epoch_scalars` / `epoch_images` (`images`)
    config                             the composed config (resolved) and the command-line overrides
    hparams                            group choices, seed and every key set on the command line, with
                                       validation / test metrics (HParams tab)

Figures (rasters, traces, histograms, confusion: the registry of `dendsn_cli.training.figures`) are
matplotlib figures 900 px wide, drawn at the first epoch, every ``figures_every`` epochs and the last
one, in a worker thread while the loop evaluates the test split, so that logging stays a small share of
an epoch. They are written where and in the order they were drawn before.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Optional

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from omegaconf import DictConfig, OmegaConf
from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import image as image_summary

from .. import figures as plots
from ..config import locate
from ..errors import shorten
from .figures import FIGURES, Seen, spec_of

SYNC_EVERY = 20  # the loop reads its sums back every N batches (and logs no more often)


class TensorBoardLogger:
    def __init__(
        self,
        histograms: bool = True,
        rasters: bool = True,
        flush_secs: int = 30,
        figures_every: int = 5,
        log_every_n_steps: int = 20,
        figures: Sequence[str] = (),
    ):
        if not isinstance(figures_every, int) or isinstance(figures_every, bool) or figures_every < 0:
            raise ValueError(
                f"figures_every must be an integer >= 0 (0 = only the first and last epoch), got {figures_every!r}"
            )
        if not isinstance(log_every_n_steps, int) or isinstance(log_every_n_steps, bool) or log_every_n_steps < 1:
            raise ValueError(f"log_every_n_steps must be an integer >= 1, got {log_every_n_steps!r}")
        self.histograms, self.rasters, self.flush_secs = histograms, rasters, flush_secs
        self.figures_every, self.log_every_n_steps = figures_every, log_every_n_steps
        # the built-in figures, then those of the user's modules (dotted names of decorated draw functions)
        self.figure_specs = [*FIGURES, *(figure_named(name) for name in figures)]
        self.writer = None
        self.drawer: Optional[ThreadPoolExecutor] = None  # the figures' worker thread, made when first needed

    def open(self, log_dir: str, purge_step: int | None = None) -> None:
        self.writer = SummaryWriter(log_dir=log_dir, flush_secs=self.flush_secs, purge_step=purge_step)

    def config(self, text: str, overrides: list | None = None) -> None:
        given = "\n".join(overrides) if overrides else "(none)"
        self.writer.add_text(
            "config", f"command-line overrides:\n\n```\n{given}\n```\n\ncomposed config:\n\n```\n{text}\n```", 0
        )

    def scalars(self, values: dict, step: int) -> None:
        for k, v in values.items():
            self.writer.add_scalar(k, v, step)

    def images(self, images: dict, step: int) -> None:
        """Tag -> [C, H, W] image in [0, 1] (e.g. a learning rule's receptive fields)."""
        for tag, img in images.items():
            self.writer.add_image(tag, img.detach().float().cpu(), step)

    def epoch_tensors(self, named_params: dict, potentials: dict, step: int) -> None:
        if not self.histograms:
            return
        values = {f"weights/{n}": p for n, p in named_params.items()}
        values.update({f"potential/{n}": v for n, v in potentials.items()})
        for tag, v in values.items():
            v = v.detach().float().flatten()
            v = v[torch.isfinite(v)].cpu()  # a diverging run still logs what is finite
            if v.numel():
                try:
                    self.writer.add_histogram(tag, v, step)
                except ValueError:  # values near float max overflow the bin edges
                    pass

    def wants_figures(self, epoch: int, last: bool) -> bool:
        if not self.rasters:
            return False
        return epoch == 1 or last or (self.figures_every > 0 and epoch % self.figures_every == 0)

    def draw_figures(self, seen: Seen) -> Future:
        """Start drawing the figures of ``seen`` (`figure_specs`: the built-in ones and the user's) in the
        worker thread; `add_figures` writes them. Each is a figure of its own (Agg, no pyplot)."""
        if self.drawer is None:
            self.drawer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dendsn-figures")
        return self.drawer.submit(render_figures, seen, self.figure_specs)

    def add_figures(self, drawn: Future, step: int) -> None:
        """Wait for the figures of `draw_figures` and write them at ``step``, in the registry's order."""
        for summary in drawn.result():
            self.writer._get_file_writer().add_summary(summary, step)

    def hparams(self, hparams: dict, metrics: dict, given: tuple = ()) -> None:
        """The run's hyperparameters and metrics for the HParams tab. bool, int, float and str keep their
        types (torch's `hparams` writes bools as numbers). The experiment record lists the keys in
        ``given`` (those set on the command line, swept ones among them) first, marked as differing,
        then the rest; its metrics are only ``metrics``' tags. Every run of a sweep writes the same record,
        so whichever one TensorBoard reads shows the sweep's keys without ticking boxes."""

        def record(tag, **content):
            data = plugin_data_pb2.HParamsPluginData(version=metadata.PLUGIN_DATA_VERSION, **content)
            meta = SummaryMetadata(
                plugin_data=SummaryMetadata.PluginData(
                    plugin_name=metadata.PLUGIN_NAME, content=data.SerializeToString()
                )
            )
            return Summary(value=[Summary.Value(tag=tag, metadata=meta)])

        start = plugin_data_pb2.SessionStartInfo()
        infos = []
        for key, value in sorted(hparams.items(), key=lambda kv: (kv[0] not in given, kv[0])):
            if isinstance(value, bool):
                start.hparams[key].bool_value, kind = value, api_pb2.DATA_TYPE_BOOL
            elif isinstance(value, (int, float)):
                start.hparams[key].number_value, kind = float(value), api_pb2.DATA_TYPE_FLOAT64
            else:
                start.hparams[key].string_value, kind = str(value), api_pb2.DATA_TYPE_STRING
            infos.append(api_pb2.HParamInfo(name=key, type=kind, differs=key in given))
        experiment = api_pb2.Experiment(
            hparam_infos=infos, metric_infos=[api_pb2.MetricInfo(name=api_pb2.MetricName(tag=k)) for k in metrics]
        )
        fw = self.writer._get_file_writer()
        fw.add_summary(record(metadata.EXPERIMENT_TAG, experiment=experiment))
        fw.add_summary(record(metadata.SESSION_START_INFO_TAG, session_start_info=start))
        fw.add_summary(
            record(
                metadata.SESSION_END_INFO_TAG,
                session_end_info=plugin_data_pb2.SessionEndInfo(status=api_pb2.STATUS_SUCCESS),
            )
        )
        for k, v in metrics.items():
            self.writer.add_scalar(k, v, 0)

    def close(self) -> None:
        """Wait for figures still being drawn (they are dropped: the epoch that wanted them did not log
        them), then flush and close the event file."""
        if self.drawer is not None:
            self.drawer.shutdown(wait=True, cancel_futures=True)
            self.drawer = None
        if self.writer is not None:
            self.writer.flush()
            self.writer.close()
            self.writer = None


def figure_chw(fig) -> np.ndarray:
    """[3, H, W] uint8: ``fig`` rendered by Agg (as `SummaryWriter.add_figure` renders it), then freed."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    w, h = canvas.get_width_height()
    img = np.frombuffer(canvas.buffer_rgba(), dtype=np.uint8).reshape([h, w, 4])[:, :, 0:3]
    plots.close_figure(fig)
    return np.moveaxis(img, source=2, destination=0)


def figure_named(name: str):
    """The `FigureSpec` of the draw function a dotted ``name`` of ``logger.figures`` names."""
    try:
        draw = locate(name)
    except Exception as e:  # hydra's message spans lines: one line for the user
        raise ValueError(
            f"{name} in figures cannot be imported ({shorten(str(e).splitlines()[-1] or type(e).__name__)}); "
            "name a draw function decorated with @dendsn_cli.training.figures.figure, as module.function"
        ) from None
    return spec_of(draw, name)


def render_figures(seen: Seen, figures=None) -> list:
    """The image summaries (PNG-encoded) of every registered figure of ``seen``, in order."""
    out = []
    for spec in FIGURES if figures is None else figures:
        for tag, fig in spec.draw(seen):
            out.append(image_summary(tag, figure_chw(fig), dataformats="CHW"))
    return out


class RankLogger:
    """The logger of a rank after 0 under torchrun: writes nothing, but wants figures when rank 0 does (the
    evaluations that record them reduce the same tensors on every rank)."""

    def __init__(self, logger):
        self.logger = logger
        self.log_every_n_steps = getattr(logger, "log_every_n_steps", SYNC_EVERY)
        self.figure_specs = logger.figure_specs  # the same records on every rank

    def wants_figures(self, epoch: int, last: bool) -> bool:
        return self.logger.wants_figures(epoch, last)

    def __getattr__(self, name):
        return lambda *a, **k: None


HPARAM_SKIP = ("hydra", "resume", "ckpt", "progress", "profile", "device")


def hparams_of(cfg: DictConfig, choices: dict, overrides: list) -> tuple[dict, tuple]:
    """The hyperparameters a sweep compares: every group choice, the seed, and each key the user set or
    swept on the command line (its composed value, with its own type: bool, int, float or str; lists
    as text), and the names of those set on the command line. Not the 60-odd keys that stay at their
    defaults: the HParams tab shows what varied."""
    flat: dict = {
        k: str(v) for k, v in sorted(choices.items()) if v is not None and not k.startswith(("hydra", "logger"))
    }
    flat["seed"] = int(cfg.seed)
    given = []
    for o in overrides:
        key = o.split("=", 1)[0].lstrip("+~")
        if not key or key.startswith(HPARAM_SKIP):
            continue
        if key in choices:
            given.append(key)
            continue
        value = OmegaConf.select(cfg, key, default=None, throw_on_missing=False)
        if isinstance(value, (DictConfig,)) or value is None:
            continue
        if not isinstance(value, (bool, int, float, str)):
            value = str(OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value)
        flat[key] = value
        given.append(key)
    return flat, tuple(given)

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

Figures (rasters, traces, histograms, confusion) are matplotlib figures 900 px wide, drawn at the
first epoch, every ``figures_every`` epochs and the last one, so that logging stays a small share of
an epoch.
"""

from __future__ import annotations

import torch
from torch.utils.tensorboard import SummaryWriter


class TensorBoardLogger:
    def __init__(self, histograms: bool = True, rasters: bool = True, flush_secs: int = 30,
                 figures_every: int = 5, log_every_n_steps: int = 20):
        if not isinstance(figures_every, int) or isinstance(figures_every, bool) or figures_every < 0:
            raise ValueError(f"figures_every must be an integer >= 0 (0 = only the first and last epoch), got {figures_every!r}")
        if not isinstance(log_every_n_steps, int) or isinstance(log_every_n_steps, bool) or log_every_n_steps < 1:
            raise ValueError(f"log_every_n_steps must be an integer >= 1, got {log_every_n_steps!r}")
        self.histograms, self.rasters, self.flush_secs = histograms, rasters, flush_secs
        self.figures_every, self.log_every_n_steps = figures_every, log_every_n_steps
        self.writer = None

    def open(self, log_dir: str, purge_step: int | None = None) -> None:
        self.writer = SummaryWriter(log_dir=log_dir, flush_secs=self.flush_secs, purge_step=purge_step)

    def config(self, text: str, overrides: list | None = None) -> None:
        given = "\n".join(overrides) if overrides else "(none)"
        self.writer.add_text("config", f"command-line overrides:\n\n```\n{given}\n```\n\ncomposed config:\n\n```\n{text}\n```", 0)

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

    def figures(self, rasters: dict, traces: dict, neuron_rates: dict, confusion, split: str, step: int) -> None:
        """The pictures of one evaluation (see the module docstring); each a matplotlib figure."""
        from . import figures as fig

        per_trial = False
        for name, s in rasters.items():                       # [T, k, N]; the event network: a dict
            if isinstance(s, dict):
                per_trial = True
                self.writer.add_figure(f"raster/{name}", fig.event_raster(s, title=f"event network: {split} samples"), step)
                continue
            self.writer.add_figure(f"raster/{name}", fig.raster(s, title=f"{name}: {split} samples"), step)
        for name, t in traces.items():
            kind = "soma (before reset) and dendritic compartments" if "v_dend" in t else "soma (before reset)"
            self.writer.add_figure(f"traces/{name}", fig.traces(
                t["v"], t["spikes"], t["v_threshold"], v_dend=t.get("v_dend"), neuron_ids=t["neurons"],
                title=f"{name}: {kind}, {split} sample 0"), step)
        for name, r in neuron_rates.items():
            self.writer.add_figure(f"rates/{name}", fig.rate_histogram(
                r, title=f"{name} ({split})", unit="spikes / trial" if per_trial else "spikes / step"), step)
        if confusion is not None:
            self.writer.add_figure(f"confusion/{split}", fig.confusion_matrix(confusion, title=split), step)

    def hparams(self, hparams: dict, metrics: dict, given: tuple = ()) -> None:
        """The run's hyperparameters and metrics for the HParams tab. bool, int, float and str keep their
        types (torch's `hparams` writes bools as numbers). The experiment record lists the keys in
        ``given`` (those set on the command line, swept ones among them) first, marked as differing,
        then the rest; its metrics are only ``metrics``' tags. Every run of a sweep writes the same record,
        so whichever one TensorBoard reads shows the sweep's keys without ticking boxes."""
        from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
        from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2

        def record(tag, **content):
            data = plugin_data_pb2.HParamsPluginData(version=metadata.PLUGIN_DATA_VERSION, **content)
            meta = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(
                plugin_name=metadata.PLUGIN_NAME, content=data.SerializeToString()))
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
            hparam_infos=infos, metric_infos=[api_pb2.MetricInfo(name=api_pb2.MetricName(tag=k)) for k in metrics])
        fw = self.writer._get_file_writer()
        fw.add_summary(record(metadata.EXPERIMENT_TAG, experiment=experiment))
        fw.add_summary(record(metadata.SESSION_START_INFO_TAG, session_start_info=start))
        fw.add_summary(record(metadata.SESSION_END_INFO_TAG,
                              session_end_info=plugin_data_pb2.SessionEndInfo(status=api_pb2.STATUS_SUCCESS)))
        for k, v in metrics.items():
            self.writer.add_scalar(k, v, 0)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.flush()
            self.writer.close()
            self.writer = None

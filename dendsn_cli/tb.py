"""TensorBoard logging of a run: everything a researcher wants to look at, per epoch.

Tags:
    train/loss, train/acc, test/loss, test/acc, lr, perf/samples_per_s     scalars per epoch
    rate/<layer>                       mean firing rate of each spiking layer on the test split
    weights/<param>                    weight histograms
    potential/<layer>                  membrane (and dendritic) potentials after the last test batch
    raster/<layer>                     spike raster of one test sample: neurons x time
    <rule's tags>                      a learning rule's `epoch_scalars` / `epoch_images` (`images`)
    config                             the composed config (text)
    hparams                            the run's hyperparameters and final metrics (HParams tab)
"""

from __future__ import annotations

import torch
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams as hparams_summary


class TensorBoardLogger:
    def __init__(self, histograms: bool = True, rasters: bool = True, flush_secs: int = 30):
        self.histograms, self.rasters, self.flush_secs = histograms, rasters, flush_secs
        self.writer = None

    def open(self, log_dir: str, purge_step: int | None = None) -> None:
        self.writer = SummaryWriter(log_dir=log_dir, flush_secs=self.flush_secs, purge_step=purge_step)

    def config(self, text: str) -> None:
        self.writer.add_text("config", "```\n" + text + "\n```", 0)

    def scalars(self, values: dict, step: int) -> None:
        for k, v in values.items():
            self.writer.add_scalar(k, v, step)

    def images(self, images: dict, step: int) -> None:
        """Tag -> [C, H, W] image in [0, 1] (e.g. a learning rule's receptive fields)."""
        for tag, img in images.items():
            self.writer.add_image(tag, img.detach().float().cpu(), step)

    def epoch_tensors(self, model: torch.nn.Module, potentials: dict, rasters: dict, step: int) -> None:
        if self.histograms:
            values = {f"weights/{n}": p for n, p in model.named_parameters()}
            values.update({f"potential/{n}": v for n, v in potentials.items()})
            for tag, v in values.items():
                v = v.detach().float().flatten()
                v = v[torch.isfinite(v)].cpu()  # a diverging run still logs what is finite
                if v.numel():
                    try:
                        self.writer.add_histogram(tag, v, step)
                    except ValueError:  # values near float max overflow the bin edges
                        pass
        if self.rasters:
            for name, s in rasters.items():  # [T, N] -> image [1, N, T]
                img = s.float().cpu().t().unsqueeze(0)
                self.writer.add_image(f"raster/{name}", img, step)

    def hparams(self, hparams: dict, metrics: dict) -> None:
        exp, ssi, sei = hparams_summary(hparams, metrics)
        fw = self.writer._get_file_writer()
        for s in (exp, ssi, sei):
            fw.add_summary(s)
        for k, v in metrics.items():
            self.writer.add_scalar(k, v, 0)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.flush()
            self.writer.close()
            self.writer = None

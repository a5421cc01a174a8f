"""The README's pictures: the same figures `dendsn train` logs to TensorBoard, saved as PNG files.

    .venv/bin/python benchmarks/readme_figures.py            # writes benchmarks/figures/*.png (~30 s)
    .venv/bin/python benchmarks/readme_figures.py --out DIR WIRING=kto1 ...

Trains the default experiment (a dendritic MLP on the synthetic spike-timing task) for ``--epochs``
epochs with the runner's own code (`dendsn_cli.train`), then evaluates the validation split once
with the run's monitor recording, and saves what TensorBoard shows under raster/, traces/, rates/
and confusion/. Extra arguments are `dendsn train` overrides (``wiring=kto1`` shows a k-to-1 tree).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(ROOT / "figures"), help="folder for the PNG files")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("overrides", nargs="*", help="dendsn train overrides, e.g. wiring=kto1")
    args = ap.parse_args(argv)

    from hydra.utils import instantiate

    from dendsn_cli import figures
    from dendsn_cli import train as tr
    from dendsn_cli.config import compose, validate

    cfg = compose([*args.overrides, f"epochs={args.epochs}", "progress=false"])
    validate(cfg)
    device = torch.device("cpu")
    tr.seed_everything(cfg.seed)
    parts = tr.build(cfg, device)
    steps = math.ceil(len(parts.train) / cfg.batch_size)
    parts.rule.setup(parts.model, instantiate(cfg.optim), cfg.epochs * steps, cfg.lr_schedule)
    tr.calibrate(parts, cfg)
    for epoch in range(cfg.epochs):
        gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch)
        parts.model.train()
        for x, y in parts.train.batches(cfg.batch_size, shuffle=True, generator=gen):
            parts.model.reset()
            parts.rule.train_batch(parts.model, parts.encoder(x, cfg.T, time_major=parts.info.time_major), y)
    monitor = tr.Monitor(parts.layers)
    C = parts.info.n_classes
    confusion = torch.zeros(C, C, dtype=torch.long)
    split = parts.val if parts.val is not None else parts.test
    loss, acc = tr.evaluate(parts, cfg, split, monitor, record=True, confusion=confusion)
    monitor.stop()
    out = Path(args.out)
    labels = split.y[: monitor.n_samples].tolist()
    written = []
    for name, s in monitor.rasters.items():
        fig = figures.raster(s, title=f"{name}: validation samples", sample_labels=labels)
        written.append(figures.save_png(fig, out / f"raster_{name}.png"))
    for name, t in monitor.traces.items():
        kind = "soma (before reset) and dendritic compartments" if "v_dend" in t else "soma (before reset)"
        fig = figures.traces(
            t["v"],
            t["spikes"],
            t["v_threshold"],
            v_dend=t.get("v_dend"),
            neuron_ids=t["neurons"],
            title=f"{name}: {kind}, validation sample 0",
        )
        written.append(figures.save_png(fig, out / f"traces_{name}.png"))
    for name, r in monitor.neuron_rates().items():
        written.append(
            figures.save_png(figures.rate_histogram(r, title=f"{name} (validation)"), out / f"rates_{name}.png")
        )
    written.append(figures.save_png(figures.confusion_matrix(confusion, title="validation"), out / "confusion.png"))
    print(f"validation accuracy {acc:.2%} after {cfg.epochs} epochs; wrote {len(written)} figures:", file=sys.stderr)
    for p in written:
        print(f"  {p}", file=sys.stderr)


if __name__ == "__main__":
    main()

"""Every read-out and every encoder trained on Fashion-MNIST through the real CLI: the README's coding table.

    python benchmarks/coding_table.py                       # every readout= and encoder= option (2-3 min a run here)
    python benchmarks/coding_table.py --readouts counts,first_spike --encoders none
    python benchmarks/coding_table.py --jobs 2 --threads 1  # two runs at a time, one thread each

Each row is one `dendsn train dataset=fashion_mnist epochs=3 <row>` (the default MLP: 784-256 dendritic
LIF-10, T=8, seed 0, every other setting at its default): read-out rows use the default encoder (direct),
encoder rows the default read-out (spike counts); the last rows pair time-to-first-spike coding on both
sides (``encoder=latency readout=first_spike``). A cell is the final test accuracy and the training
samples/s. Prints a markdown table; ``--json FILE`` also writes the raw results.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from neuron_table import cell, run  # noqa: E402  (the same runner and cell format as the neuron table)

CONF = Path(__file__).resolve().parents[1] / "conf"
TASK = ["dataset=fashion_mnist", "epochs=3"]
PAIRS = [["encoder=latency", "readout=first_spike"], ["encoder=relative_latency", "readout=first_spike"]]


def options(group: str) -> list[str]:
    """The group's options, without the event network's input coding (encoder=binned_latency: learning=exact only)."""
    return sorted(p.stem for p in (CONF / group).glob("*.yaml") if "BinnedLatency" not in p.read_text())


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--readouts", default=None, help="comma-separated readout options (default: all; 'none': no rows)")
    ap.add_argument("--encoders", default=None, help="comma-separated encoder options (default: all; 'none': no rows)")
    ap.add_argument("--no-pairs", action="store_true", help="leave out the latency + first-spike rows")
    ap.add_argument("--jobs", type=int, default=1, help="runs at a time")
    ap.add_argument("--threads", type=int, default=None, help="OMP threads per run")
    ap.add_argument("--json", default=None)
    ap.add_argument("overrides", nargs="*", help="extra overrides for every run")
    args = ap.parse_args(argv)

    def pick(value, group):
        return [] if value == "none" else (value.split(",") if value else options(group))

    rows = [[f"readout={r}"] for r in pick(args.readouts, "readout")]
    rows += [[f"encoder={e}"] for e in pick(args.encoders, "encoder")]
    rows += [] if args.no_pairs else [p for p in PAIRS if (CONF / "encoder" / f"{p[0].split('=')[1]}.yaml").exists()]
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="dendsn-coding-") as tmp:

        def one(i_row):
            i, row = i_row
            work = Path(tmp) / f"row{i}"
            work.mkdir()
            r = run(row + TASK + list(args.overrides), work, args.threads)
            print(f"{' '.join(row):<50} {cell(r)}  [{r['wall_s']:.0f} s]", file=sys.stderr, flush=True)
            return " ".join(row), r

        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            for name, r in pool.map(one, enumerate(rows)):
                results[name] = r
    print("| option | Fashion-MNIST, 3 epochs: test acc (train samples/s) |")
    print("|---|---|")
    for name, r in results.items():
        print(f"| `{name}` | {cell(r)} |")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    main()

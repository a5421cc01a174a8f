"""Every neuron option trained through the real CLI: the README's table of test accuracy and speed.

    python benchmarks/neuron_table.py                          # every option, both tasks (about an hour on 2 CPU cores)
    python benchmarks/neuron_table.py --neurons lif,qif --tasks synthetic
    python benchmarks/neuron_table.py --somas adex,alif        # also neuron=dendritic with these somas

Tasks: ``synthetic`` = `dendsn train neuron=N` (the default embedded spike-pattern task, 10 epochs) and
``fmnist`` = `dendsn train neuron=N dataset=fashion_mnist epochs=3` (the default MLP, 784-256-10, T=8).
Each cell is the final test accuracy (metrics.json ``final.test_acc``) and the training samples/s
(``train_samples_per_s``). Runs that fail are reported with their error line, not skipped silently.
Prints a markdown table; ``--json FILE`` also writes the raw results.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TASKS = {
    "synthetic": [],
    "fmnist": ["dataset=fashion_mnist", "epochs=3"],
}


def neuron_options() -> list[str]:
    """Every option of the neuron group except the generic `dendritic` (run through --somas) and the event-driven
    `theta` (it runs only in network=event_mlp with learning=exact; README "Exact gradients")."""
    conf = Path(__file__).resolve().parents[1] / "conf" / "neuron"
    return sorted(
        p.stem for p in conf.glob("*.yaml") if p.stem != "dendritic" and "dendsn.events." not in p.read_text()
    )


def run(overrides: list[str], workdir: Path, threads: int | None) -> dict:
    run_dir = workdir / f"run{len(list(workdir.iterdir()))}"
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    cmd = [
        sys.executable,
        "-m",
        "dendsn_cli.cli",
        "train",
        "progress=false",
        "logger.rasters=false",
        f"hydra.run.dir={run_dir}",
        *overrides,
    ]
    t0 = time.time()
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.time() - t0
    if p.returncode != 0:
        err = [ln for ln in p.stderr.splitlines() if ln.startswith("dendsn: error")] or p.stderr.splitlines()[-1:]
        return {"error": err[0] if err else f"exit {p.returncode}", "wall_s": wall}
    m = json.loads((run_dir / "metrics.json").read_text())
    warn = [ln for ln in p.stderr.splitlines() if "warning" in ln]
    return {
        "test_acc": m["final"]["test_acc"],
        "best_test_acc": m["best"].get("test_acc"),
        "samples_per_s": m["train_samples_per_s"],
        "wall_s": wall,
        "warnings": warn,
    }


def cell(r: dict | None) -> str:
    if r is None:
        return ""
    if "error" in r:
        return "fails: " + r["error"].replace("|", "/")[:80]
    return f"{100 * r['test_acc']:.2f}% ({r['samples_per_s']:.0f}/s)"


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--neurons", default=None, help="comma-separated neuron options (default: all)")
    ap.add_argument("--somas", default="", help="comma-separated soma options for extra neuron=dendritic rows")
    ap.add_argument("--tasks", default="synthetic,fmnist")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", default=None)
    ap.add_argument("overrides", nargs="*", help="extra overrides for every run")
    args = ap.parse_args(argv)
    rows = [[f"neuron={n}"] for n in (args.neurons.split(",") if args.neurons else neuron_options())]
    rows += [["neuron=dendritic", f"neuron/soma={s}"] for s in args.somas.split(",") if s]
    tasks = [t for t in args.tasks.split(",") if t]
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="dendsn-neurons-") as tmp:
        for row in rows:
            name = " ".join(row)
            for task in tasks:
                r = run(row + TASKS[task] + list(args.overrides), Path(tmp), args.threads)
                results.setdefault(name, {})[task] = r
                print(f"{name:<40} {task:<10} {cell(r)}  [{r['wall_s']:.0f} s]", file=sys.stderr, flush=True)
    head = {"synthetic": "synthetic, 10 epochs", "fmnist": "Fashion-MNIST, 3 epochs"}
    print("| neuron | " + " | ".join(f"{head[t]}: test acc (train samples/s)" for t in tasks) + " |")
    print("|---|" + "---|" * len(tasks))
    for name, res in results.items():
        print(f"| `{name}` | " + " | ".join(cell(res.get(t)) for t in tasks) + " |")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    main()

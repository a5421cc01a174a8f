"""The CLI half of the golden outputs: run each tiny `dendsn` command once and collect, normalised,
what a user sees of it (terminal lines, run-dir files, TensorBoard tags and scalars).

    python tests/golden/cli_suite.py ROOT OUT.json [--subprocess]

runs every command in the empty folder ROOT (as the working directory) and writes the normalised
artefacts to OUT.json. By default the commands are calls of the real entry point
`dendsn_cli.cli.main(argv)` in this one process (torch is imported once: the whole suite costs about
one run's start-up), with file descriptors 1 and 2 sent to files, so everything the process writes
is caught. With --subprocess each command is the `dendsn` console script in its own process, as a
user starts it: `record.py` checks that both give the same artefacts, so that the fast in-process
form stands for the real one. Run in a child process of pytest (never inside pytest's own process):
the runs change process-wide state (signal handlers, logging, Hydra's global state).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests/: `import golden` as a script too

from golden import MASKS, VERSION_MASKS, clean_metrics, masked_listing, normalise_text  # noqa: E402

# Tiny sizes: tests/conftest.py's TINY (copied, so that a change there cannot change the golden runs).
TINY = [
    "dataset.n_train=300",
    "dataset.n_test=100",
    "dataset.val=100",
    "T=12",
    "network.hidden=[48]",
    "batch_size=50",
    "epochs=2",
    "progress=false",
    "optim.lr=0.005",
    "logger.rasters=false",
]
SMALLER = [
    "dataset.n_train=100",
    "dataset.n_test=50",
    "dataset.val=50",
    "T=8",
    "network.hidden=[16]",
    "batch_size=50",
    "progress=false",
    "optim.lr=0.005",
    "logger.rasters=false",
]

# (name, argv, the run dirs it writes (relative to ROOT)); run in this order (eval reads `run`, resume reads `res`).
COMMANDS = [
    ("help", ["--help"], []),
    ("version", ["--version"], []),
    ("list", ["list"], []),
    ("list_neuron", ["list", "neuron"], []),
    ("train_help", ["train", "--help"], []),
    ("simulate_help", ["simulate", "--help"], []),
    ("eval_help", ["eval", "--help"], []),
    # one run with every figure (the figures' TensorBoard tags), 2 epochs
    ("train", ["train", *TINY, "logger.rasters=true", "hydra.run.dir=run"], ["run"]),
    ("eval", ["eval", "ckpt=run"], []),
    ("eval_last", ["eval", "ckpt=run/checkpoints/last.pt", "device=cpu"], []),
    # a resume: one epoch, then on to two
    ("resume_first", ["train", *SMALLER, "epochs=1", "neuron=lif", "profile=true", "hydra.run.dir=res"], ["res"]),
    ("resume", ["train", "resume=res", "epochs=2"], ["res"]),
    (
        "sweep",
        ["train", "-m", "neuron=lif,dend_lif", *SMALLER, "epochs=1", "init_readout_rate=0.05", "hydra.sweep.dir=sweep"],
        ["sweep"],
    ),  # (a read-out that fires: the jobs differ)
    ("simulate", ["simulate", "T=40", "amp_steps=3", "n_neurons=2", "traces=1", "hydra.run.dir=sim"], ["sim"]),
    ("cfg_job", ["train", "--cfg", "job", "neuron=lif"], []),  # stdout compared as parsed YAML
    # refusals: one line and an exit code (and no run dir left: see "workdir")
    ("bad_key", ["train", "bogus=1", "hydra.run.dir=bad"], []),
    ("bad_option", ["train", "neuron=nope", "hydra.run.dir=bad"], []),
    ("bad_range", ["train", "neuron.tau=-1", "hydra.run.dir=bad"], []),
    ("bad_epochs", ["train", "epochs=0", "hydra.run.dir=bad"], []),
    ("bad_sweep", ["train", "-m", "neuron=lif,nope", "hydra.sweep.dir=badsweep"], []),
    ("bad_simulate", ["simulate", "bogus=1", "hydra.run.dir=bad"], []),
    ("bad_eval", ["eval"], []),
    ("bad_list", ["list", "nope"], []),
    ("bad_command", ["bogus"], []),
]


TEXT_ONLY = ("help", "list", "list_neuron", "train_help", "simulate_help", "eval_help", "cfg_job")  # not masked


def clean_env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("HYDRA_FULL_ERROR", "DENDSN_DEBUG", "COLUMNS", "LINES")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


@contextlib.contextmanager
def _fds_to(out_path: Path, err_path: Path):
    """Send file descriptors 1 and 2 (and sys.stdout / sys.stderr) to two files for the duration."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        os.dup2(out.fileno(), 1)
        os.dup2(err.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def run_inprocess(argv: list[str], root: Path, logs: Path, name: str) -> tuple[int, str, str]:
    from dendsn_cli import cli

    os.chdir(root)
    sys.argv = ["dendsn", *argv]
    code = 0
    out, err = logs / f"{name}.out", logs / f"{name}.err"
    with _fds_to(out, err):
        try:
            cli.main(list(argv))
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    for h in logging.root.handlers[:]:  # as at the end of a process: the run's log file closed
        h.close()
        logging.root.removeHandler(h)
    return code, out.read_text(), err.read_text()


def run_subprocess(argv: list[str], root: Path) -> tuple[int, str, str]:
    import subprocess

    script = str(Path(sys.executable).with_name("dendsn"))
    p = subprocess.run([script, *argv], cwd=root, capture_output=True, text=True, env=clean_env(), timeout=900)
    return p.returncode, p.stdout, p.stderr


# ---------------------------------------------------------------- what a run dir holds
TIME_SCALARS = ("perf/",)  # TensorBoard scalars measured in seconds or samples per second: tag kept, values not


def tensorboard(folder: Path) -> dict:
    """{"tags": {kind: [tags]}, "scalars": {tag: [[step, value], ...]}} of the event files in ``folder``."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    size = {"scalars": 0, "images": 1, "histograms": 1, "tensors": 0, "audio": 1, "compressedHistograms": 1}
    acc = EventAccumulator(str(folder), size_guidance=size)
    acc.Reload()
    tags = {k: sorted(v) for k, v in acc.Tags().items() if isinstance(v, list) and v}
    scalars = {
        t: [[e.step, e.value] for e in acc.Scalars(t)]
        for t in tags.get("scalars", [])
        if not t.startswith(TIME_SCALARS)
    }
    return {"tags": tags, "scalars": scalars}


def run_dir(root: Path, rel: str) -> dict:
    """The normalised artefacts of one run dir (or a sweep dir and its jobs)."""
    import yaml

    d = root / rel
    out = {"listing": masked_listing(d)}
    for f in sorted(d.rglob("*.json")):  # metrics.json, simulate.json, sweep_results.json: times left out
        out[f"json:{f.relative_to(d)}"] = clean_metrics(json.loads(normalise_text(f.read_text(), root)))
    for f in sorted(d.rglob(".hydra/config.yaml")):
        out[f"config:{f.relative_to(d)}"] = yaml.safe_load(f.read_text())
    for f in sorted(d.rglob(".hydra/overrides.yaml")):
        out[f"overrides:{f.relative_to(d)}"] = yaml.safe_load(normalise_text(f.read_text(), root))
    for f in sorted(d.rglob("*.csv")):
        out[f"csv:{f.relative_to(d)}"] = clean_csv(f.read_text())
    for f in sorted(d.rglob("*.log")):
        out[f"log:{f.relative_to(d)}"] = normalise_text(f.read_text(), root).splitlines()
    folders = sorted({f.parent for f in d.rglob("events.out.tfevents.*")})
    for f in folders:
        out[f"tensorboard:{f.relative_to(d)}"] = tensorboard(f)
    for f in sorted(d.rglob("*.pt")):
        out[f"checkpoint:{f.relative_to(d)}"] = checkpoint_keys(f)
    return out


def checkpoint_keys(path: Path) -> dict:
    import torch

    ck = torch.load(path, map_location="cpu", weights_only=False)
    model = ck.get("model", {})
    return {
        "keys": sorted(ck),
        "model": {k: list(v.shape) for k, v in model.items()} if isinstance(model, dict) else None,
        "epoch": ck.get("epoch"),
    }


TIME_COLUMNS = ("time_s", "train_samples_per_s", "samples_per_s", "duration")


def clean_csv(text: str) -> list:
    rows = list(csv.reader(io.StringIO(text)))
    if not rows:
        return rows
    keep = [i for i, h in enumerate(rows[0]) if h not in TIME_COLUMNS]
    return [[r[i] for i in keep if i < len(r)] for r in rows]


def collect(root: Path, subprocess: bool = False) -> dict:
    root = root.resolve()
    logs = root.parent / (root.name + ".logs")
    logs.mkdir(exist_ok=True)
    env = clean_env()
    os.environ.clear()
    os.environ.update(env)
    result = {}
    for name, argv, dirs in COMMANDS:
        if subprocess:
            code, out, err = run_subprocess(argv, root)
        else:
            code, out, err = run_inprocess(argv, root, logs, name)
        masks = VERSION_MASKS if name == "version" else () if name in TEXT_ONLY else MASKS
        entry = {
            "argv": argv,
            "exit": code,
            "stdout": normalise_text(out, root, masks).splitlines(),
            "stderr": normalise_text(err, root, masks).splitlines(),
        }
        if "--cfg" in argv:  # the printed config: `_target_`s compared by what they name
            import yaml

            entry["stdout_yaml"], entry["stdout"] = yaml.safe_load(out), []
        for rel in dirs:
            entry[f"dir:{rel}"] = run_dir(root, rel)
        result[name] = entry
    result["workdir"] = {
        "argv": ["(what the working directory holds at the end)"],
        "exit": 0,
        "stderr": [],
        "stdout": sorted(p.name + ("/" if p.is_dir() else "") for p in root.iterdir()),
    }
    return result


def main() -> None:
    root, out = Path(sys.argv[1]), Path(sys.argv[2])
    root.mkdir(parents=True, exist_ok=True)
    data = collect(root, subprocess="--subprocess" in sys.argv[3:])
    out.write_text(json.dumps(data, indent=1, sort_keys=True))


if __name__ == "__main__":
    main()

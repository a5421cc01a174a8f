"""`dendsn`: train, eval, list.

    dendsn train [KEY=VALUE ...] [-m] [--help] [--cfg job]   Hydra app: one run, or a sweep with -m
    dendsn eval ckpt=PATH [KEY=VALUE ...]                     test accuracy and loss of a checkpoint
    dendsn list [GROUP]                                       config groups and their options

Every user mistake ends here as one line on stderr and a non-zero exit (2 for bad input, 130 for an
interrupted run), never a traceback. Before Hydra starts a run, the overrides are composed and
validated once (every job of a sweep), so a typo fails before any work.
"""

from __future__ import annotations

import contextlib
import os
import sys
from importlib import resources
from pathlib import Path
from typing import Any

from .errors import UserError

USAGE = """usage: dendsn <command> [args]

commands:
  train [KEY=VALUE ...]        train a network (add -m for a sweep, --help for groups and keys)
  eval ckpt=PATH [KEY=VALUE]   evaluate a checkpoint on the test split
  list [GROUP]                 config groups and their options

examples:
  dendsn train
  dendsn train dataset=fashion_mnist neuron=plif epochs=5
  dendsn train -m neuron=lif,if seed=0,1
  dendsn eval ckpt=outputs/2026-01-01/12-00-00/checkpoints/best.pt"""

FAILED_JOBS: list[str] = []


def fail(message: str, code: int = 2) -> None:
    print(f"dendsn: error: {message}", file=sys.stderr)
    sys.exit(code)


# ---------------------------------------------------------------- list
def _groups() -> dict[str, list[tuple[str, str]]]:
    root = resources.files("dendsn_conf")
    out: dict[str, list[tuple[str, str]]] = {}
    for group in sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(("_", "hydra"))):
        options = []
        for f in sorted(root.joinpath(group).iterdir(), key=lambda p: p.name):
            if f.name.endswith(".yaml"):
                comments = [ln for ln in f.read_text().splitlines() if ln.startswith("#") and "@package" not in ln]
                desc = comments[0].lstrip("# ").strip() if comments else ""
                options.append((f.name[:-5], desc))
        out[group] = options
    return out


def list_command(args: list[str]) -> None:
    groups = _groups()
    if args:
        unknown = [a for a in args if a not in groups]
        if unknown:
            fail(f"no config group {unknown[0]!r}; groups: {', '.join(groups)}")
        groups = {a: groups[a] for a in args}
    defaults = _default_choices()
    for group, options in groups.items():
        print(f"{group}:")
        for name, desc in options:
            mark = "*" if defaults.get(group) == name else " "
            print(f"  {mark} {name:<18} {desc}")
    print("(* = default)")


def _default_choices() -> dict:
    from .config import compose

    cfg = compose([], return_hydra_config=True)
    return dict(cfg.hydra.runtime.choices)


# ---------------------------------------------------------------- validation before Hydra
def _split_args(args: list[str]):
    from hydra._internal.utils import get_args_parser

    parser = get_args_parser()
    try:
        ns = parser.parse_args(args)
    except SystemExit:
        fail("could not parse the arguments; see `dendsn train --help`")
    return ns


def _resume_overrides(overrides: list[str]) -> list[str]:
    """For resume=PATH: the checkpoint's own overrides, then the user's, in the original run dir."""
    from . import checkpoint

    value = next((o.split("=", 1)[1] for o in overrides if o.startswith("resume=")), None)
    if not value:
        return overrides
    path = checkpoint.find(value, "resume")
    ck = checkpoint.load(path, "resume")
    user = [o for o in overrides if not o.startswith("resume=")]
    user_keys = {o.split("=", 1)[0].lstrip("+~") for o in user}
    merged = [o for o in ck["overrides"] if o.split("=", 1)[0].lstrip("+~") not in user_keys]
    merged += user + [f"resume={path}"]
    run_dir = path.parent.parent if path.parent.name == "checkpoints" else path.parent
    if (run_dir / ".hydra").is_dir() and not any(o.startswith("hydra.run.dir=") for o in merged):
        merged.append(f"hydra.run.dir={run_dir}")
    return merged


def prevalidate(ns) -> list[str]:
    from .config import compose, expand_sweep, validate

    overrides = _resume_overrides(list(ns.overrides))
    jobs = expand_sweep(overrides) if ns.multirun else [overrides]
    for job in jobs:
        validate(compose(job))
    return overrides


# ---------------------------------------------------------------- train (Hydra app)
def _task(cfg) -> Any:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from .train import train

    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    multirun = hc.mode == RunMode.MULTIRUN
    overrides = [o for o in hc.overrides.task if not o.startswith(("resume=", "hydra."))]
    try:
        return train(cfg, run_dir, overrides, dict(hc.runtime.choices))
    except Exception as e:
        if isinstance(e, UserError):
            message, code = str(e), 130 if str(e).startswith("interrupted") else 2
        elif os.environ.get("DENDSN_DEBUG"):
            raise
        else:
            message, code = f"internal error: {type(e).__name__}: {e} (rerun with DENDSN_DEBUG=1 for the traceback)", 1
        if not multirun:
            fail(message, code)
        (run_dir / "error.txt").write_text(message + "\n")
        print(f"dendsn: job {hc.job.num} failed: {message}", file=sys.stderr)
        return None


class SweepReport:
    """Hydra callback: after a sweep, list the jobs that failed (their error.txt)."""

    def on_multirun_end(self, config, **kwargs) -> None:
        sweep = Path(config.hydra.sweep.dir)
        failed = sorted(sweep.glob("*/error.txt"))
        done = sorted(sweep.glob("*/metrics.json"))
        for f in failed:
            FAILED_JOBS.append(f"{f.parent}: {f.read_text().strip()}")
        ok = len([d for d in done if not (d.parent / "error.txt").exists()])
        print(f"dendsn: sweep finished: {ok} job(s) completed, {len(failed)} failed | {sweep}", file=sys.stderr)
        for line in FAILED_JOBS:
            print(f"dendsn:   failed {line}", file=sys.stderr)

    def __getattr__(self, name):  # the other Callback hooks do nothing
        if name.startswith("on_"):
            return lambda *a, **k: None
        raise AttributeError(name)


@contextlib.contextmanager
def _keep_run_record_unless_trained(overrides: list[str]):
    """On resume, Hydra rewrites the run's .hydra/ with the new overrides before the run starts. If the
    resumed run then fails before it saves a checkpoint (say, its overrides change the model), put
    the run's record back as it was: .hydra/ keeps describing what its checkpoints hold."""
    run_dir = next((o.split("=", 1)[1] for o in overrides if o.startswith("hydra.run.dir=")), None)
    record = Path(run_dir) / ".hydra" if run_dir else None
    if record is None or not record.is_dir() or not any(o.startswith("resume=") for o in overrides):
        yield
        return
    saved = {f: f.read_bytes() for f in record.glob("*.yaml")}
    last = Path(run_dir) / "checkpoints" / "last.pt"
    stamp = last.stat().st_mtime_ns if last.exists() else None
    try:
        yield
    finally:
        if (last.stat().st_mtime_ns if last.exists() else None) == stamp:
            for f, data in saved.items():
                f.write_bytes(data)


def train_command(args: list[str]) -> None:
    import hydra

    from . import config  # noqa: F401  (registers the schema in Hydra's ConfigStore)

    ns = _split_args(args)
    informational = ns.help or ns.hydra_help or ns.cfg or ns.info or ns.shell_completion or ns.resolve
    overrides = list(ns.overrides)
    if not informational:
        try:
            overrides = prevalidate(ns)
        except UserError as e:
            fail(str(e))
    hydra_flags = [a for a in args if a not in ns.overrides]
    sys.argv = ["dendsn train", *hydra_flags, *overrides]
    app = hydra.main(config_path="pkg://dendsn_conf", config_name="train", version_base="1.3")(_task)
    with _keep_run_record_unless_trained(overrides):
        app()
    if FAILED_JOBS:
        sys.exit(1)


# ---------------------------------------------------------------- eval
def eval_command(args: list[str]) -> None:
    from . import checkpoint
    from .config import compose, validate
    from .train import evaluate_checkpoint

    if any(a in ("-h", "--help") for a in args):
        print("usage: dendsn eval ckpt=PATH [KEY=VALUE ...]\n"
              "Composes the config the checkpoint was trained with (plus your overrides, e.g. device=cpu),\n"
              "loads its weights and prints test accuracy and loss.")
        return
    value = next((a.split("=", 1)[1] for a in args if a.startswith("ckpt=")), None)
    if not value:
        fail("dendsn eval needs ckpt=PATH (a checkpoint file or a run dir)")
    path = checkpoint.find(value, "ckpt")
    ck = checkpoint.load(path, "ckpt")
    user = [a for a in args if not a.startswith("ckpt=")]
    user_keys = {o.split("=", 1)[0].lstrip("+~") for o in user}
    overrides = [o for o in ck["overrides"] if o.split("=", 1)[0].lstrip("+~") not in user_keys] + user
    cfg = compose(overrides)
    validate(cfg)
    r = evaluate_checkpoint(cfg, path, ck)
    print(f"dendsn eval: {path} (epoch {r['epoch']}) | test acc {r['test_acc']:.2%} | "
          f"test loss {r['test_loss']:.4f} | {r['n_test']} samples")


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE)
        return
    cmd, rest = args[0], args[1:]
    commands = {"train": train_command, "eval": eval_command, "list": list_command}
    if cmd not in commands:
        fail(f"unknown command {cmd!r}; use train, eval or list (dendsn --help)")
    try:
        commands[cmd](rest)
    except UserError as e:
        fail(str(e))
    except KeyboardInterrupt:
        fail("interrupted", 130)


if __name__ == "__main__":
    main()

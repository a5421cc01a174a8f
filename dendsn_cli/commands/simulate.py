"""`dendsn simulate`: drive one layer of neurons with a stimulus, no training, and measure its f-I curve.

    dendsn simulate [neuron=OPTION] [wiring=OPTION] [stimulus=OPTION] [KEY=VALUE ...] [-m]

The pipeline (`pipeline.py`) with the measurement (`fi_curve.py`) as each job; the stimuli are in
`dendsn_cli.stimuli`. Sweep an input rate with -m stimulus.rate=50,100,200 (one f-I curve per rate).
This module holds the command's config (conf/simulate.yaml over `SimulateConfig`), its checks, its help,
and its sweep report: at a sweep's end `FISweepReport` writes fI.csv and fI.png at the sweep root, one
curve per job, labelled by the overrides that differ.
"""

from __future__ import annotations

import inspect
import itertools
import math
import re
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, List, Optional

from hydra import compose as hydra_compose
from hydra import initialize_config_module
from hydra.core.config_store import ConfigStore
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import HydraException
from hydra.experimental.callback import Callback
from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from .. import config, figures
from ..errors import UserError, shorten
from ..runs import rundir, sweep
from ..runs.overrides import value_of
from ..runs.state import STATE
from .fi_curve import amplitude_values, build, choice, fi_figure, read_csv, simulate, write_csv
from .listing import groups
from .pipeline import Command, run, run_job

CONFIG_NAME = "simulate"


@dataclass
class SimulateConfig:
    neuron: Any = MISSING
    wiring: Any = None
    stimulus: Any = MISSING
    seed: int = 0
    device: str = "cpu"
    T: int = 200
    dt: float = 1.0
    n_neurons: int = 4
    amplitudes: Optional[List[float]] = None
    amp_min: float = 0.0
    amp_max: float = 2.0
    amp_steps: int = 21
    compartments: Optional[List[int]] = None
    traces: int = 3
    figures: bool = True


ConfigStore.instance().store(name="dendsn_simulate_schema", node=SimulateConfig)


ROOT_KEYS = ", ".join(sorted(SimulateConfig.__dataclass_fields__))


def explain(e: BaseException, overrides: list[str]) -> str:
    """One line for a composition error: `config.explain`'s, naming `dendsn simulate`, plus the root keys."""
    msg = f"{e}\n{e.__cause__ or ''}"
    m = re.search(r"Key '([^']+)' not in 'SimulateConfig'", msg)
    if m:
        return f"{m.group(1)} is not a known key of dendsn simulate; the root keys are: {ROOT_KEYS}"
    m = re.search(r"Invalid value assigned: (\w+) is not a ListConfig.*?full_key: (\S+)", msg, re.S)
    if m:
        key = m.group(2)
        given = value_of(overrides, key)
        return f"{key}={shorten(given, 40) if given is not None else '?'} has the wrong type: expected a list, e.g. {key}=[0,0.5,1]"
    return (config.unreadable(overrides, e) or config.explain(e)).replace("dendsn train", "dendsn simulate")


def compose(overrides: list[str], return_hydra_config: bool = False) -> DictConfig:
    """conf/simulate.yaml with ``overrides``, interpolations resolved (outside hydra.*); UserError on failure."""
    big = config.big_number(overrides)
    if big:
        raise UserError(
            f"{big.lstrip('+~')}= holds a number with hundreds of digits; give a value in its range "
            "(`dendsn simulate --help`)"
        )
    GlobalHydra.instance().clear()
    try:
        with initialize_config_module(config_module=config.CONFIG_MODULE, version_base="1.3"):
            cfg = hydra_compose(CONFIG_NAME, overrides=overrides, return_hydra_config=return_hydra_config)
        for key in cfg.keys():  # resolve every interpolation now (one line if one fails)
            if key != "hydra":
                node = cfg[key]
                if OmegaConf.is_config(node):
                    OmegaConf.to_container(node, resolve=True)
        return cfg
    except (HydraException, OmegaConfBaseException) as e:
        raise UserError(explain(e, overrides)) from None
    finally:
        GlobalHydra.instance().clear()


def validate(cfg: DictConfig) -> None:
    """Range checks of the root keys, signature checks of the groups, and the stimulus and one neuron built
    (their constructors check their values): raise UserError with one line."""
    known = set(SimulateConfig.__dataclass_fields__) | {"hydra"}
    for key in cfg.keys():
        if key not in known:
            raise UserError(f"{key} is not a known key of dendsn simulate; the root keys are: {ROOT_KEYS}")
    if not 0 <= cfg.seed < 2**63:
        raise UserError(f"seed={shorten(cfg.seed, 40)} is out of range: seed must be an integer in [0, 2**63)")
    for key in ("T", "n_neurons"):
        if cfg[key] < 1:
            raise UserError(f"{key}={cfg[key]} is out of range: {key} must be >= 1")
    if cfg.traces < 0:
        raise UserError(f"traces={cfg.traces} is out of range: it must be >= 0 (0 = no raster / trace figures)")
    if not (math.isfinite(cfg.dt) and cfg.dt > 0):
        raise UserError(f"dt={cfg.dt} is out of range: dt must be > 0 (milliseconds per step)")
    if not config.DEVICE_PATTERN.match(str(cfg.device)):
        raise UserError(f"device={cfg.device!r} is not known: use cpu, auto, cuda or cuda:N")
    amplitude_values(cfg)
    if cfg.get("wiring") is not None and "wiring" not in cfg.neuron:
        raise UserError(
            f"wiring applies to dendritic neurons only, and neuron={choice(cfg, 'neuron')} is "
            "a point neuron: pick a dendritic neuron (e.g. neuron=dend_lif) or drop the wiring override"
        )
    _check_stimulus_keys(cfg)
    stim_dt = cfg.stimulus.get("dt") if isinstance(cfg.get("stimulus"), DictConfig) else None
    if stim_dt is not None and stim_dt != cfg.dt:
        raise UserError(
            f"stimulus.dt={stim_dt} differs from dt={cfg.dt}: the stimulus and the rates must share one time "
            f"step; set dt={stim_dt} (the root key) and leave stimulus.dt as it is"
        )
    for group in ("neuron", "wiring", "stimulus"):
        node = cfg.get(group)
        if isinstance(node, DictConfig):
            config.check_node(node, group)
    config.check_step_mode(cfg.neuron, "neuron")
    build(cfg)


def _check_stimulus_keys(cfg: DictConfig) -> None:
    """A key added to the stimulus (+stimulus.KEY=...) must be a parameter of its class."""
    node = cfg.get("stimulus")
    if not isinstance(node, DictConfig) or "_target_" not in node:
        return
    try:
        params = [
            k for k in inspect.signature(config.locate(node._target_)).parameters if k not in ("self", "args", "kwargs")
        ]
    except Exception:
        return  # config.check_node names an unimportable target
    for key in node.keys():
        if not str(key).startswith("_") and str(key) not in params:
            keys = ", ".join(params) or "none: the amplitude alone sets the current"
            raise UserError(f"stimulus.{key} is not a key of stimulus={choice(cfg, 'stimulus')}; its keys are: {keys}")


SWEEP_LIMIT = 64  # jobs of a sweep composed and validated one by one; beyond, each value with the others' first


def check_sweep(overrides: list[str]) -> tuple[list[str], list[str]]:
    """Validate every job of ``dendsn simulate -m OVERRIDES`` before Hydra starts (each swept value, in every
    combination up to SWEEP_LIMIT jobs); return the overrides and the exclude_keys of the job dir names."""
    if config.sweeper_of(overrides) != "basic":
        raise UserError(
            "dendsn simulate sweeps with Hydra's basic sweeper (one job per value, -m KEY=A,B); a "
            "sampling sweeper needs an objective to optimize, which a simulation has not"
        )
    GlobalHydra.instance().clear()
    try:
        with initialize_config_module(config_module=config.CONFIG_MODULE, version_base="1.3"):
            loader = GlobalHydra.instance().config_loader()
            per_key = config.expand_sweep(overrides, config_loader=loader)
            n = math.prod(len(lines) for lines in per_key)
            if n <= SWEEP_LIMIT:
                combos = [list(c) for c in itertools.product(*per_key)]
            else:
                firsts = [lines[0] for lines in per_key]
                combos = [firsts] + [
                    firsts[:i] + [v] + firsts[i + 1 :] for i, lines in enumerate(per_key) for v in lines[1:]
                ]
            exclude: list[str] = []
            for i, combo in enumerate(combos):
                try:
                    cfg = hydra_compose(CONFIG_NAME, overrides=combo, return_hydra_config=True)
                except (HydraException, OmegaConfBaseException) as e:
                    raise UserError(explain(e, combo)) from None
                if i == 0:
                    exclude = list(cfg.hydra.job.config.override_dirname.exclude_keys)
                validate(cfg)
    finally:
        GlobalHydra.instance().clear()
    return overrides, exclude


class FISweepReport(Callback):
    """Hydra callback: after a sweep, fI.csv and fI.png at the sweep root, one f-I curve per job (labelled by
    the overrides that differ between the jobs), and the list of the jobs that failed (error.txt)."""

    def on_multirun_end(self, config, **kwargs) -> None:
        root = Path(config.hydra.sweep.dir)
        jobs = sorted(sweep.job_dirs(root), key=lambda j: (sweep.job_number(j) or 0, j.name))
        lists = [{"override_list": sweep.read_overrides(j)} for j in jobs]
        swept = sweep.swept_keys(root, lists, list(config.hydra.overrides.task))
        curves, table, failed, meta = [], [], [], []
        for job, record in zip(jobs, lists):
            label = ",".join(o for o in record["override_list"] if sweep.override_key(o) in swept) or job.name
            if (job / "error.txt").exists():
                failed.append(f"{job}: {(job / 'error.txt').read_text().strip()}")
                continue
            if not (job / "fI.csv").exists():
                continue
            rows = read_csv(job / "fI.csv")
            curves.append((label, rows))
            meta.append(sweep.read_json(job / "simulate.json"))
            table += [
                {
                    "job": job.name,
                    "label": label,
                    "amplitude": r["amplitude"],
                    "spikes_per_step": r["spikes_per_step"],
                    "rate_hz": r["rate_hz"],
                }
                for r in rows
            ]
        if table:
            write_csv(root / "fI.csv", table)
            labels = {m.get("x_label") for m in meta}
            dts = {m.get("dt") for m in meta}
            x_label = labels.pop() if len(labels) == 1 and None not in labels else "amplitude"
            dt = dts.pop() if len(dts) == 1 and None not in dts else None
            shared = [
                f"{g}={meta[0][g]}"
                for g in ("neuron", "wiring", "stimulus")
                if meta[0].get(g) and all(m.get(g) == meta[0][g] for m in meta)
            ]
            steps = {(m.get("T"), m.get("dt")) for m in meta}
            if len(steps) == 1 and None not in next(iter(steps)):
                T_, dt_ = next(iter(steps))
                shared.append(f"(T={T_}, dt={dt_:g} ms)")
            fig = fi_figure(
                curves, x_label, dt or 1.0, title=f"f-I curves, one per job: {' '.join(shared)}".rstrip(": ")
            )
            if dt is None:  # jobs with different dt: spikes/step has no one axis
                fig.axes[-1].remove()
            figures.save_png(fig, root / "fI.png")
            print(f"dendsn: f-I curves of {len(curves)} job(s): {root / 'fI.png'} and fI.csv")
        STATE.failed_jobs.extend(failed)
        print(f"dendsn: sweep finished: {len(curves)} job(s) completed, {len(failed)} failed | {root}", file=sys.stderr)
        for line in failed:
            print(f"dendsn:   failed {line}", file=sys.stderr)


def root_keys() -> list[tuple[str, str]]:
    """(key, its comment in conf/simulate.yaml (default: value)) for every root key, in the file's order."""
    text = resources.files(config.CONFIG_MODULE).joinpath(f"{CONFIG_NAME}.yaml").read_text()
    out = []
    for line in text.split("hydra:")[0].splitlines():
        m = re.match(r"^([A-Za-z_]+):\s*([^#]*?)\s*(?:#\s*(.*))?$", line)
        if m and m.group(1) != "defaults" and m.group(2):
            out.append((m.group(1), f"{m.group(3) or ''} (default: {m.group(2)})".strip()))
    return out


def stimulus_keys() -> list[tuple[str, str]]:
    """(stimulus option, 'key (default), ...') from conf/stimulus/*.yaml."""
    folder = resources.files(config.CONFIG_MODULE).joinpath("stimulus")
    out = []
    for f in sorted((f for f in folder.iterdir() if f.name.endswith(".yaml")), key=lambda f: f.name):
        keys = [
            f"{m.group(1)}={m.group(2)}"
            for m in re.finditer(r"^([a-z]\w*):\s*([^#\s]+)", f.read_text(), re.M)
            if m.group(1) != "dt"
        ]
        out.append((f.name[:-5], ", ".join(keys) or "(amplitude only)"))
    return out


def help_text() -> str:
    """`dendsn simulate --help`."""
    found = groups()
    defaults = dict(compose([], return_hydra_config=True).hydra.runtime.choices)
    lines = [
        "usage: dendsn simulate [GROUP=OPTION | KEY=VALUE ...] [-m] [--cfg job] [--help]",
        "",
        "Drive one layer of neurons with a stimulus, no training: for each amplitude of a sweep, the firing",
        "rate -> an f-I curve (fI.csv, fI.png), and rasters, soma and compartment traces in TensorBoard.",
        "",
        "config groups (* = default):",
    ]
    for group in ("neuron", "wiring", "stimulus"):
        names = ", ".join(f"{n}*" if defaults.get(group) == n else n for n, _ in found.get(group, []))
        lines.append(f"  {group}: {names}")
        if group == "wiring":
            lines.append("      the morphology of a dendritic neuron (its default comes with the neuron option)")
    lines += ["", "stimulus keys (stimulus.KEY=VALUE; each amplitude scales the current):"]
    lines += [f"  {name:<9} {keys}" for name, keys in stimulus_keys()]
    keys = root_keys()
    width = max(len(k) for k, _ in keys)
    lines += ["", "root keys:"] + [f"  {k:<{width}}  {d}" for k, d in keys]
    lines += [
        "",
        "examples:",
        "  dendsn simulate                                         dend_lif, constant current 0..2",
        "  dendsn simulate neuron=lif amplitudes=[0,1,1.5,2,4]",
        "  dendsn simulate neuron=dend_lif wiring=kto1 compartments=[0] stimulus=poisson",
        "  dendsn simulate stimulus=sine stimulus.frequency=20 T=500",
        "  dendsn simulate -m neuron.tau=2,4,8                     one curve per job, fI.png at the sweep root",
        "",
        "Runs go to outputs/<date>/<time>/ (sweeps to outputs/multirun/); watch them with: tensorboard --logdir outputs",
    ]
    return "\n".join(lines)


class Simulate(Command):
    name = config_name = job_name = CONFIG_NAME

    def help_text(self) -> str:
        return help_text()

    def compose(self, overrides: list[str], return_hydra_config: bool = False) -> Any:
        return compose(overrides, return_hydra_config)

    def validate(self, cfg: Any) -> None:
        validate(cfg)

    def check_sweep(self, overrides: list[str]) -> tuple[list[str], list[str]]:
        return check_sweep(overrides)

    def refusal(self, message: str) -> str:  # (claim_dir's hint to resume is train's: a simulation is run again)
        return re.sub(r"continue it with: dendsn train resume=.*?, or ", "", message)

    def job(self, cfg: Any, run_dir: Path, overrides: list[str], choices: dict, hc: Any, multirun: bool) -> Any:
        if multirun:
            rundir.lock_dir(run_dir, "hydra.sweep.subdir")
        return simulate(cfg, run_dir, overrides, choices)


SIMULATE = Simulate()


def task(cfg: Any) -> Any:
    """Hydra's task function of `dendsn simulate` (launchers pickle it by reference)."""
    return run_job(SIMULATE, cfg)


def command(args: list[str]) -> None:
    run(SIMULATE, args, task)

"""Sweeps, checked before Hydra starts: `check_sweep` validates every job of a `-m` sweep (basic or Optuna)
without composing each one; `expand_sweep` spells out the values each override sweeps. Also dendsn's
defaults over the sweeper and launcher plugins' own (stored in Hydra's ConfigStore on import)."""

from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass

from hydra import compose as hydra_compose
from hydra import initialize_config_module
from hydra._internal.config_loader_impl import ConfigLoaderImpl  # noqa: PLC2701 (applies one override to a composed config)
from hydra.core.config_store import ConfigStore
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ValueType
from hydra.core.plugins import Plugins
from hydra.errors import HydraException
from omegaconf import open_dict
from omegaconf.errors import OmegaConfBaseException

from ..errors import UserError
from .compose import check_optional_groups, explain
from .schema import CONFIG_MODULE, CONFIG_NAME
from .validate import validate

SAMPLING_SWEEPERS = ("optuna",)  # sweepers that draw values from distributions (interval, tag)
STRUCTURE_LIMIT = 128  # combinations of swept group options composed in full, at most
VALUE_CHECKS_ON_EVERY_BASE = 2000  # beyond this, swept values are checked against the first combination only


def _register_sweeper_schemas() -> None:
    """`hydra/sweeper=optuna` for dendsn: the plugin's config with direction maximize (the objective is
    a job's best validation accuracy) and n_jobs 1 (each trial learns from all before it), 20 trials.
    Stored over the plugin's own entry, after Hydra's plugin scan (which runs once per process and
    executes the plugin's config module, storing its defaults). A conf/hydra/sweeper/optuna.yaml
    cannot do this: Hydra refuses a config file named like a schema that has a defaults list."""
    try:
        from hydra_plugins.hydra_optuna_sweeper.config import Direction, OptunaSweeperConf  # noqa: PLC0415 (optional plugin)
    except ImportError:  # not installed: hydra/sweeper=optuna then fails with one line
        return
    Plugins.instance()
    ConfigStore.instance().store(
        group="hydra/sweeper",
        name="optuna",
        provider="dendsn",
        node=OptunaSweeperConf(direction=Direction.maximize, n_trials=20, n_jobs=1),
    )


_register_sweeper_schemas()


def _register_launcher_schemas() -> None:
    """dendsn's defaults over the launcher plugins' own (stored after their plugin scan, as for Optuna): a
    dendsn job resumes from its last.pt when it is started again, so submitit may requeue a job that hits
    its time limit (``max_num_timeout`` 3 on SLURM) and the local executor gets a week, not an hour; a Ray
    sweep starts no dashboard. Every key can still be set: hydra.launcher.timeout_min=240."""
    Plugins.instance()
    store = ConfigStore.instance()
    try:
        from hydra_plugins.hydra_submitit_launcher.config import LocalQueueConf, SlurmQueueConf  # noqa: PLC0415 (optional plugin)

        store.store(
            group="hydra/launcher", name="submitit_local", provider="dendsn", node=LocalQueueConf(timeout_min=10080)
        )
        store.store(
            group="hydra/launcher", name="submitit_slurm", provider="dendsn", node=SlurmQueueConf(max_num_timeout=3)
        )
    except ImportError:  # not installed: hydra/launcher=submitit_* fails in one line
        pass
    try:
        from hydra_plugins.hydra_ray_launcher._config import RayConf, RayLauncherConf  # noqa: PLC0415, PLC2701 (optional plugin)

        store.store(
            group="hydra/launcher",
            name="ray",
            provider="dendsn",
            node=RayLauncherConf(ray=RayConf(init={"address": None, "include_dashboard": False})),
        )
    except ImportError:
        pass


_register_launcher_schemas()


@dataclass
class SweepCheck:
    overrides: list[str]  # what to hand to Hydra (for a sampler, globs spelt out as choices)
    sweeper: str  # the hydra/sweeper option
    exclude_keys: list[str]  # hydra.job.config.override_dirname.exclude_keys of the composed config
    checked: int  # configs validated


def _parse(overrides: list[str]):
    try:
        return OverridesParser.create().parse_overrides(overrides)
    except HydraException as e:
        raise UserError(explain(e)) from None


def _is_glob(o) -> bool:
    return o.value_type == ValueType.GLOB_CHOICE_SWEEP


def sweeper_of(overrides: list[str]) -> str:
    """The hydra/sweeper option chosen on the command line (Hydra's `basic` by default)."""
    for o in _parse(overrides):
        if o.key_or_group == "hydra/sweeper" and not o.is_delete():
            return str(o.value())
    return "basic"


def expand_sweep(overrides: list[str], sampler: bool = False, config_loader=None) -> list[list[str]]:
    """Per override, the override lines of the values to check: a constant is itself; a choice or a
    glob (over the group's options, needs ``config_loader``) every value; a range its ends. With a
    sampler (Optuna), an interval is represented by its ends and middle; the basic sweeper cannot
    draw from an interval, which is an error."""
    parsed = _parse(overrides)
    swept = {o.key_or_group: o.input_line for o in parsed if o.is_sweep_override()}
    for o in parsed:
        if o.key_or_group in swept and o.input_line != swept[o.key_or_group]:
            # the basic sweeper would take the last, Optuna's the one that is not a sweep: say which to keep
            raise UserError(f"{o.key_or_group} is given twice ({o.input_line} and {swept[o.key_or_group]}); keep one")
    out = []
    for o in parsed:
        line, key = o.input_line, o.get_key_element()
        if not o.is_sweep_override():
            out.append([line])
            continue
        if o.is_hydra_override():
            raise UserError(f"{line}: Hydra's own settings cannot be swept; run one sweep per value")
        if o.is_interval_sweep():
            if not sampler:
                raise UserError(
                    f"{line}: interval() draws values at random, which the basic sweeper cannot do; use "
                    f"hydra/sweeper=optuna for an Optuna study (dendsn train -m hydra/sweeper=optuna '{line}')"
                )
            v = o.value()
            out.append([f"{key}={x}" for x in dict.fromkeys((v.start, (v.start + v.end) / 2, v.end))])
            continue
        if _is_glob(o):
            o.config_loader = config_loader
            values = list(o.sweep_string_iterator()) if config_loader is not None else []
            if not values:
                options = config_loader.get_group_options(o.key_or_group) if config_loader is not None else []
                raise UserError(
                    f"{line} matches no option of '{o.key_or_group}'; available: {', '.join(options) or 'none'}"
                )
        else:
            values = list(o.sweep_string_iterator())
        if o.is_range_sweep():
            # its values share one type and lie between its ends, and validate's checks of a number are
            # intervals (>= 1, in (0, 1)): the ends stand for all (range(0,10000) is 2 checks, not 10,000).
            # Optuna's sweeper reads range's stop as inclusive: check it too.
            values = [*values[:1], *values[-1:], *([str(o.value().stop)] if sampler else [])]
            values = list(dict.fromkeys(values))
        if not values:
            raise UserError(f"{line} sweeps over no value")
        out.append([f"{key}={v}" for v in values])
    return out


def _is_structural(line: str, config_loader) -> bool:
    """Does this override choose configs (a group option, a hydra setting, a _target_)? Those are composed;
    plain values are applied to a composed config, which is about ten times faster."""
    o = OverridesParser.create().parse_override(line)
    key = o.key_or_group
    return (
        o.is_hydra_override()
        or o.package is not None
        or "/" in key
        or key.endswith("_target_")
        or bool(config_loader.get_group_options(key))
    )


def check_sweep(overrides: list[str]) -> SweepCheck:
    """Validate every job of ``dendsn train -m OVERRIDES`` before Hydra starts; raise UserError with one line.

    The jobs are not composed one by one (Hydra's compose takes ~70 ms; a sweep of thousands of jobs
    would wait minutes). Overrides that choose configs (group options, _target_) are composed for
    every combination of their values (up to STRUCTURE_LIMIT combinations; beyond, each option with
    the first of the others). Every other swept value is then applied alone to each composed config
    (to the first only, beyond VALUE_CHECKS_ON_EVERY_BASE checks) and validated (~10 ms): `validate`
    checks one key at a time, so a value that is wrong in any job is wrong there too, and a bad value
    in job 66 of 70 stops the sweep before it starts. A range is checked at its ends (see
    expand_sweep), so `seed=range(0,10000)` costs two checks. What only a combination of plain values
    breaks (none that `validate` checks today) fails in its own job, which writes error.txt.
    """
    check_optional_groups(overrides)
    sweeper = sweeper_of(overrides)
    sampler = sweeper in SAMPLING_SWEEPERS
    GlobalHydra.instance().clear()
    try:
        with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
            loader = GlobalHydra.instance().config_loader()
            per_key = expand_sweep(overrides, sampler=sampler, config_loader=loader)
            if sampler:  # Optuna's parser has no config loader for glob(): hand it the options
                overrides = [
                    _choice_line(lines) if _is_glob(o) else line
                    for o, line, lines in zip(_parse(overrides), overrides, per_key)
                ]
            exclude_keys, checked = _check_jobs(per_key, loader, overrides)
    finally:
        GlobalHydra.instance().clear()
    return SweepCheck(overrides, sweeper, exclude_keys, checked)


def _combinations(structural: list[list[str]]) -> list[list[str]]:
    """Every combination of the swept structural overrides, up to STRUCTURE_LIMIT; beyond, each option with
    the first of the others."""
    n_struct = 1
    for lines in structural:
        n_struct *= len(lines)
    if n_struct <= STRUCTURE_LIMIT:
        return [list(c) for c in itertools.product(*structural)]
    firsts = [lines[0] for lines in structural]
    return [firsts] + [firsts[:i] + [v] + firsts[i + 1 :] for i, lines in enumerate(structural) for v in lines[1:]]


def _check_jobs(per_key: list[list[str]], loader, overrides: list[str]) -> tuple[list[str], int]:
    """Compose each combination of structural overrides, validate it and each swept value on it (see
    `check_sweep`); return (the override_dirname keys to exclude, the number of configs validated)."""
    structural = [lines for lines in per_key if len(lines) > 1 and _is_structural(lines[0], loader)]
    values = [lines for lines in per_key if len(lines) > 1 and not _is_structural(lines[0], loader)]
    fixed = [lines[0] for lines in per_key if len(lines) == 1]
    combos = _combinations(structural)
    variants = [v for lines in values for v in lines[1:]]
    exclude_keys, checked = [], 0
    for n, combo in enumerate(combos):
        base = fixed + combo + [lines[0] for lines in values]
        try:
            cfg = hydra_compose(CONFIG_NAME, overrides=base, return_hydra_config=True)
        except (HydraException, OmegaConfBaseException) as e:
            raise UserError(_interval_hint(explain(e), overrides)) from None
        if n == 0:
            exclude_keys = list(cfg.hydra.job.config.override_dirname.exclude_keys)
            trials = cfg.hydra.sweeper.get("n_trials")
            if isinstance(trials, int) and trials < 1:
                raise UserError(f"hydra.sweeper.n_trials={trials} is out of range: a study needs at least 1 trial")
        with open_dict(cfg):
            del cfg["hydra"]  # not validated; copying it would double the time per value
        validate(cfg)
        checked += 1
        if n and len(combos) * len(variants) > VALUE_CHECKS_ON_EVERY_BASE:
            continue
        for line in variants:
            job = copy.deepcopy(cfg)
            try:
                ConfigLoaderImpl._apply_overrides_to_config(_parse([line]), job)
            except (HydraException, OmegaConfBaseException) as e:
                raise UserError(_interval_hint(explain(e), overrides)) from None
            validate(job)
            checked += 1
    return exclude_keys, checked


def _choice_line(values: list[str]) -> str:
    key = values[0].split("=", 1)[0]
    return f"{key}=choice({','.join(v.split('=', 1)[1] for v in values)})"


def _interval_hint(message: str, overrides: list[str]) -> str:
    if "expected Integer" in message and "interval(" in " ".join(overrides):
        message += "; interval() draws floats: for an integer key use range(START,STOP[,STEP])"
    return message

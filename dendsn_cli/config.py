"""The config schema, its validation, and composition outside `hydra.main`.

The root keys are a structured config (`DendsnConfig` in Hydra's ConfigStore), so a misspelt root
key or a wrong type fails at composition. Group options are YAML files with a ``_target_``; their
keys are checked against the target's signature (`check_node`): an unknown key or a value of the
wrong type names the key. Range checks of root keys live in `validate`; range checks of model
parameters live in the model constructors (they raise ValueError, turned into one line here).

`compose` runs the same composition as `dendsn train` (used by `dendsn eval` and to validate a run
before Hydra starts), and `explain` turns Hydra/OmegaConf exceptions into one line. `check_sweep`
validates every job of a `-m` sweep (basic or Optuna) without composing each one.
"""

from __future__ import annotations

import collections.abc
import inspect
import itertools
import re
import typing
from dataclasses import dataclass, field
from typing import Any, Optional

from hydra import compose as hydra_compose
from hydra import initialize_config_module
from hydra.core.config_store import ConfigStore
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import HydraException
from hydra._internal.utils import _locate
from omegaconf import DictConfig, ListConfig, MISSING, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from .errors import UserError, shorten

CONFIG_MODULE = "dendsn_conf"
CONFIG_NAME = "train"
GROUPS = ("dataset", "encoder", "network", "synapse", "neuron", "wiring", "readout", "learning", "optim", "logger")


@dataclass
class EarlyStop:
    """Types only: the defaults and their comments are in conf/train.yaml."""

    patience: Optional[int] = MISSING
    min_delta: float = MISSING


@dataclass
class DendsnConfig:
    """The root keys' types (a misspelt key or a wrong type fails at composition). Their defaults live in
    conf/train.yaml, the one place a user reads them (`dendsn train --help` prints them from there); a group
    that may be absent (wiring, synapse, readout, experiment) is None until an option is chosen."""

    dataset: Any = MISSING
    encoder: Any = MISSING
    network: Any = MISSING
    neuron: Any = MISSING
    wiring: Any = None
    synapse: Any = None
    readout: Any = None
    learning: Any = MISSING
    optim: Any = MISSING
    logger: Any = MISSING
    experiment: Any = None
    seed: int = MISSING
    device: str = MISSING
    epochs: int = MISSING
    T: int = MISSING
    batch_size: int = MISSING
    init_rate: Optional[float] = MISSING
    init_readout_rate: Optional[float] = MISSING
    init_lr_scale: bool = MISSING
    early_stop: EarlyStop = field(default_factory=EarlyStop)
    amp: str = MISSING
    lr_schedule: str = MISSING
    lr_decay_epochs: float = MISSING
    progress: bool = MISSING
    profile: bool = MISSING
    resume: Optional[str] = MISSING
    ckpt: Optional[str] = MISSING


ConfigStore.instance().store(name="dendsn_schema", node=DendsnConfig)

_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


def validate(cfg: DictConfig) -> None:
    """Range checks of the root keys and signature checks of every group; raise UserError."""
    known = set(DendsnConfig.__dataclass_fields__) | {"hydra"}
    for key in cfg.keys():
        if key not in known:
            raise UserError(f"{key} is not a known key; the root keys are: {', '.join(sorted(known - {'hydra'}))}")
    if not 0 <= cfg.seed < 2**63:
        raise UserError(f"seed={shorten(cfg.seed, 40)} is out of range: seed must be an integer in [0, 2**63)")
    for key in ("T", "batch_size", "epochs"):
        if cfg[key] < 1:
            raise UserError(f"{key}={cfg[key]} is out of range: {key} must be >= 1")
    for key in ("init_rate", "init_readout_rate"):
        if cfg[key] is not None and not 0.0 < cfg[key] < 1.0:
            raise UserError(f"{key}={cfg[key]} is out of range: it must be in (0, 1) (spikes per neuron and step), or null to keep the plain initialisation")
    if cfg.early_stop.patience is not None and cfg.early_stop.patience < 1:
        raise UserError(f"early_stop.patience={cfg.early_stop.patience} is out of range: it must be >= 1 (epochs), or null for no early stopping")
    if cfg.early_stop.min_delta < 0:
        raise UserError(f"early_stop.min_delta={cfg.early_stop.min_delta} is out of range: it must be >= 0")
    if not _DEVICE.match(str(cfg.device)):
        raise UserError(f"device={cfg.device!r} is not known: use auto, cpu, cuda or cuda:N")
    if cfg.amp not in ("none", "bf16", "fp16"):
        raise UserError(f"amp={cfg.amp!r} is not known: use none, bf16 or fp16")
    if cfg.lr_schedule not in ("none", "cosine", "exp"):
        raise UserError(f"lr_schedule={cfg.lr_schedule!r} is not known: use none, cosine or exp")
    if not cfg.lr_decay_epochs > 0:
        raise UserError(f"lr_decay_epochs={cfg.lr_decay_epochs} is out of range: it must be > 0 (epochs for the "
                        "learning rate to fall by 1/e under lr_schedule=exp)")
    if cfg.get("wiring") is not None and "wiring" not in cfg.neuron:
        raise UserError(
            f"wiring applies to dendritic neurons only, and neuron={choice_name(cfg, 'neuron')} is a point neuron: "
            "pick a dendritic neuron (e.g. neuron=dend_lif) or drop the wiring override"
        )
    for group in GROUPS:
        node = cfg.get(group)
        if isinstance(node, DictConfig):
            check_node(node, group)
            _check_step_mode(node, group)
    _check_sequential(cfg)
    _check_events(cfg)


EVENT_PARTS = {   # the event-driven network's options: group -> (targets, option name)
    "network": (("dendsn.events.EventMLP",), "event_mlp"),
    "neuron": (("dendsn.events.Theta", "dendsn.events.QIFExp"), "theta"),
    "encoder": (("dendsn_cli.encoders.BinnedLatency",), "binned_latency"),
    "learning": (("dendsn_cli.learning.ExactGradient",), "exact"),
}


def _check_events(cfg: DictConfig) -> None:
    """The event network (spikegd) is one method: network=event_mlp, neuron=theta (or qif_exp), encoder=binned_latency,
    learning=exact and readout=first_spike go together, on static images, in float32; any of them with
    another group's clock-driven option is refused in one line that names what to add."""
    chosen = {g: isinstance(cfg.get(g), DictConfig) and str(cfg[g].get("_target_")) in targets
              for g, (targets, _) in EVENT_PARTS.items()}
    if not any(chosen.values()):
        return
    whole = " ".join(f"{g}={name}" for g, (_, name) in EVENT_PARTS.items()) + " readout=first_spike"
    present = [f"{g}={choice_name(cfg, g) if g == 'neuron' else EVENT_PARTS[g][1]}" for g, on in chosen.items() if on]
    missing = [g for g, on in chosen.items() if not on]
    if missing:
        shown = ", ".join(f"{g}={choice_name(cfg, g)}" for g in missing)
        raise UserError(f"{' '.join(present)} belongs to the event-driven theta network (exact gradients, spikegd), "
                        f"which does not run with {shown}: use {whole} together (neuron=qif_exp for QIF neurons with "
                        "a synaptic current), or experiment=fmnist_exact")
    readout = cfg.get("readout")
    if not isinstance(readout, DictConfig) or str(readout.get("_target_")) != "dendsn_cli.readouts.FirstSpike":
        name = choice_name(cfg, "readout") if isinstance(readout, DictConfig) else "null"
        raise UserError(f"readout={name} does not apply to the event network, whose outputs are spike times; "
                        "use readout=first_spike")
    if readout.get("silent_time") is not None:
        raise UserError(f"readout.silent_time={readout.silent_time} does not apply to the event network: an output "
                        "that never fires gets its pseudospike time; drop the override")
    if cfg.amp != "none":
        raise UserError(f"amp={cfg.amp} does not apply to learning=exact: the event simulation needs float32 phases "
                        "near the threshold; use amp=none")
    dataset = cfg.get("dataset")
    if isinstance(dataset, DictConfig) and (dataset.get("sequential") not in (None, "none")
                                            or str(dataset.get("_target_")) != "dendsn_cli.data.TorchvisionImages"):
        raise UserError(f"dataset={choice_name(cfg, 'dataset')} does not apply to the event network: its input coding "
                        "(encoder=binned_latency) bins the pixels of static images; use dataset=mnist or fashion_mnist")


def _check_sequential(cfg: DictConfig) -> None:
    """Row sequences (dataset.sequential=rows) are analog pixel values, fed as currents: encoder=direct passes
    them on as they are and encoder=delta spikes where they change; the others would read the rows as spikes
    (poisson, poisson_hz pass time-major data through) or need static inputs, so they are refused here."""
    dataset, encoder = cfg.get("dataset"), cfg.get("encoder")
    if not isinstance(dataset, DictConfig) or not isinstance(encoder, DictConfig):
        return
    sequential = dataset.get("sequential")
    refused = {f"dendsn_cli.encoders.{cls}": name for cls, name in (
        ("Poisson", "poisson"), ("Latency", "latency"), ("RelativeLatency", "relative_latency"),
        ("PoissonHz", "poisson_hz"), ("SSTB", "sstb"), ("MSTB", "mstb"), ("Phase", "phase"),
        ("Population", "population"))}
    target = str(encoder.get("_target_"))
    events = str(dataset.get("_target_")) == "dendsn_cli.data.TonicEvents"
    if events and target != "dendsn_cli.encoders.Direct":
        shown = refused.get(target) or ("delta" if target == "dendsn_cli.encoders.Delta" else target)
        raise UserError(f"encoder={shown} does not apply to dataset={dataset.get('name')}: its "
                        "frames already are each time step's input (event counts); use encoder=direct")
    name = refused.get(str(encoder.get("_target_")))
    if sequential not in (None, "none") and name is not None:
        raise UserError(f"encoder={name} does not apply to dataset.sequential={sequential}: each step's row of "
                        "analog pixel values is the input current; use encoder=direct (or encoder=delta)")


def _check_step_mode(node: DictConfig, path: str) -> None:
    """Layers run over the whole time axis at once (step_mode 'm'): the runner feeds [T, B, ...] and the
    learning rules read every step's state; single-step mode would silently drop the memory across steps."""
    for key in node.keys():
        value = node._get_node(key)
        if key == "step_mode" and node[key] != "m":
            raise UserError(f"{path}.step_mode={node[key]!r} is not supported: dendsn runs every layer over the whole "
                            "time axis (step_mode 'm'); drop the override")
        if isinstance(value, DictConfig):
            _check_step_mode(value, f"{path}.{key}")


def choice_name(cfg: DictConfig, group: str) -> str:
    """The option of ``group`` that ``cfg`` chose, as a user writes it (neuron=lif): from Hydra's runtime
    choices, else from the config's own hydra node, else the option whose file names the same target."""
    choices = OmegaConf.select(cfg, "hydra.runtime.choices", default=None) if "hydra" in cfg else None
    if choices is not None and choices.get(group) is not None:        # the config's own record first
        return str(choices.get(group))
    try:
        from hydra.core.hydra_config import HydraConfig

        return str(HydraConfig.get().runtime.choices.get(group))
    except ValueError:
        pass
    node = cfg.get(group)
    target = str(node.get("_target_", "?")) if isinstance(node, DictConfig) else "?"
    if isinstance(node, DictConfig) and isinstance(node.get("name"), str) and group == "dataset":
        return node.name
    options = [name for name, t in _option_targets(group) if t == target]
    return options[0] if len(options) == 1 else target.rsplit(".", 1)[-1]


def _option_targets(group: str) -> list:
    """(option, _target_) of every option file of ``group``."""
    from importlib import resources

    folder = resources.files(CONFIG_MODULE).joinpath(group)
    out = []
    if not folder.is_dir():
        return out
    for f in folder.iterdir():
        if f.name.endswith(".yaml"):
            m = re.search(r"^_target_:\s*(\S+)", f.read_text(), re.M)
            if m:
                out.append((f.name[:-5], m.group(1)))
    return out


def check_node(node: DictConfig, path: str) -> None:
    """Check a node with a ``_target_`` against the target's signature, recursively."""
    for key, value in node.items_ex(resolve=False) if hasattr(node, "items_ex") else node.items():
        if isinstance(value, DictConfig):
            check_node(value, f"{path}.{key}")
    target = node.get("_target_")
    if target is None:
        return
    try:
        obj = _locate(str(target))              # not hydra.utils.get_object: it logs the error itself
    except Exception:
        raise UserError(f"{path}._target_={target!r} cannot be imported: check the class path") from None
    params, takes_kwargs, hints = _signature(obj)
    if params is None:
        return
    for key in node.keys():
        key = str(key)
        if key.startswith("_"):
            continue
        if key not in params:
            if takes_kwargs:
                continue
            known = ", ".join(params)
            raise UserError(f"{path}.{key} is not a parameter of {target}; its parameters are: {known}")
        value = OmegaConf.to_object(node[key]) if isinstance(node[key], (DictConfig, ListConfig)) else node[key]
        expected = hints.get(key)
        if expected is not None and not _matches(value, expected):
            raise UserError(
                f"{path}.{key}={value!r} has the wrong type: expected {_type_name(expected)}"
            )


def _signature(obj):
    """(parameters, accepts **kwargs, type hints) of a callable; for a class, follow ``**kw`` up its bases."""
    fns = [c.__init__ for c in obj.__mro__ if "__init__" in vars(c)] if inspect.isclass(obj) else [obj]
    params, hints = {}, {}
    for fn in fns:
        try:
            sig = inspect.signature(fn)
        except (TypeError, ValueError):
            return None, True, {}
        try:
            hints.update({k: v for k, v in typing.get_type_hints(fn).items() if k not in hints})
        except Exception:
            pass
        for k, p in sig.parameters.items():
            if k != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                params.setdefault(k, p)
        if not any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
            return params, False, hints
        if fn is object.__init__:
            break
    return params, True, hints


def _matches(value, expected) -> bool:
    if isinstance(value, dict) and "_target_" in value:
        return True
    origin = typing.get_origin(expected)
    if origin is typing.Union or str(origin) == "types.UnionType":
        return any(_matches(value, a) for a in typing.get_args(expected))
    if expected is Any:
        return True
    if expected is type(None):
        return value is None
    if expected is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if expected in (bool, str):
        return isinstance(value, expected)
    if origin in (list, tuple, collections.abc.Sequence) or expected in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return False
        args = [a for a in typing.get_args(expected) if a is not Ellipsis]
        if origin is tuple and len(args) > 1:                       # Tuple[int, float]: one type per place
            return len(value) == len(args) and all(_matches(v, a) for v, a in zip(value, args))
        return not args or all(_matches(v, args[0]) for v in value)
    if inspect.isclass(expected) and isinstance(value, (str, int, float, bool)):
        return isinstance(value, expected)
    return True


def _type_name(expected) -> str:
    args = typing.get_args(expected)
    if typing.get_origin(expected) in (list, tuple, collections.abc.Sequence):
        return f"a list of {_type_name(args[0])}" if args else "a list"
    if args:
        return " or ".join(_type_name(a) for a in args)
    return "null" if expected is type(None) else getattr(expected, "__name__", str(expected))


def _options_with_subgroup(group: str, sub: str) -> list[str]:
    """The options of ``group`` whose defaults list chooses its subgroup ``sub`` (neuron=dendritic for neuron/soma)."""
    from importlib import resources

    folder = resources.files("dendsn_conf").joinpath(*group.split("/"))
    if not folder.joinpath(sub).is_dir():
        return []
    return sorted(f.name[:-5] for f in folder.iterdir()
                  if f.name.endswith(".yaml") and re.search(rf"^\s*-\s*{re.escape(sub)}\s*:", f.read_text(), re.M))


def explain(e: BaseException) -> str:
    """One line for a Hydra / OmegaConf composition error."""
    msg = str(e).strip()
    if e.__cause__ is not None:
        msg += "\n" + str(e.__cause__).strip()
    m = re.search(r"Could not find '([^']+)/([^/']+)'.*?Available options in '[^']+':\n((?:\t[^\n]*\n?)*)", msg, re.S)
    if m:
        group, option, rest = m.groups()
        options = ", ".join(o.strip() for o in rest.split("\n") if o.strip())
        return f"{group}={option} is not an option of '{group}'; available: {options}"
    m = re.search(r"Could not (?:find|load) '([^']+)/([^/']+)'", msg)
    if m:
        return f"{m.group(1)}={m.group(2)} is not an option of '{m.group(1)}'; run `dendsn list {m.group(1)}`"
    m = re.search(r"Could not override '([^']+)'\.\s*No match in the defaults list", msg)
    if m:
        key = m.group(1)
        if key == "wiring":
            return ("wiring applies to dendritic neurons only; pick a dendritic neuron (e.g. neuron=dend_lif) "
                    "or drop the wiring override")
        parent, _, sub = key.rpartition("/")
        hosts = _options_with_subgroup(parent, sub) if parent else []
        if hosts:                                   # neuron/soma: a group inside some neuron options
            return (f"{key} is chosen inside {' or '.join(f'{parent}={h}' for h in hosts)}; "
                    f"add {parent}={hosts[0]} (e.g. {parent}={hosts[0]} {key}=...)")
        return f"{key} is not a config group of this run; run `dendsn list` for the groups"
    m = re.search(r"Could not override '(hydra\.sweeper\.[^']+)'", msg)
    if m:
        return (f"{m.group(1)} is not a setting of this sweeper; Optuna's settings need hydra/sweeper=optuna "
                "(`dendsn train -m hydra/sweeper=optuna --cfg hydra` prints them)")
    m = re.search(r"Key '([^']+)' is not in struct\s*full_key: ([^\s]+)", msg, re.S)
    if m:
        return f"{m.group(2)} is not a known key; check its spelling (`dendsn train --cfg job` prints every key)"
    m = re.search(r"Value '([^']*)' (?:of type '[^']+' )?could not be converted to (\w+)\s*full_key: ([^\s]+)", msg)
    if m:
        return f"{m.group(3)}={m.group(1)!r} has the wrong type: expected {m.group(2)}"
    m = re.search(r"field '[^']+' is not Optional\s*full_key: ([^\s]+)", msg)
    if m:
        return f"{m.group(1)}=null is not allowed: {m.group(1)} needs a value (`dendsn train --help` gives its default)"
    m = re.search(r"Value '([^']*)' is not a valid (\w+) \(type \w+\)\s*full_key: ([^\s]+)", msg)
    if m:
        value, kind, key = m.groups()
        hint = "true or false" if kind == "bool" else f"a {kind}"
        return f"{key}={shorten(value, 40)!r} is not a valid {kind}: use {hint}"
    m = re.search(r"Error parsing override '(.*)'\nmissing EQUAL", msg, re.S)
    if m:
        return (f"{shorten(m.group(1), 60)!r} is not an override: write KEY=VALUE (e.g. neuron=lif), "
                "+KEY=VALUE to add a key, ~KEY to remove one")
    m = re.search(r"LexerNoViableAltException: (.*)\n(\s*)\^", msg)
    if m:
        text, pad = m.group(1), len(m.group(2)) - len("LexerNoViableAltException: ")
        bad = text[pad] if 0 <= pad < len(text) else "?"
        return (f"{shorten(text, 60)!r} cannot be read: {bad!r} is not allowed in an unquoted value; quote the "
                f"value (KEY='\"...\"') if it is meant, or fix the typo")
    m = re.search(r"Interpolation key '([^']*)' not found\s*full_key: ([^\s]+)", msg)
    if m:
        return (f"{m.group(2)}: its value refers to ${{{m.group(1)}}}, which is not a key of the config; "
                "give a plain value, or an interpolation of a key that exists")
    m = re.search(r"Environment variable '([^']*)' not found\W*full_key: ([^\s]+)", msg)
    if m:
        return (f"{m.group(2)}: its value reads the environment variable {m.group(1)}, which is not set; export it, "
                f"or give a default: '${{oc.env:{m.group(1)},VALUE}}'")
    m = re.search(r"Missing mandatory value: ([\w.]+)", msg)
    if m:                                   # only a config group is mandatory in the schema (~neuron)
        key = m.group(1)
        return f"{key} has no option, and a run needs one (removed with ~{key}?); pick one, e.g. `dendsn list {key}`"
    m = re.search(r"Ambiguous value for argument '([^']+)'", msg)
    if m:
        return f"{m.group(1)} is a sweep: add -m (dendsn train -m {m.group(1)}) to run one job per value"
    first = msg.splitlines()[0] if msg else type(e).__name__
    return first


OPTIONAL_GROUPS = ("experiment",)   # groups that default to nothing: Hydra ignores an unknown option of these


def check_optional_groups(overrides: list[str]) -> None:
    """``experiment=nope`` (a typo of an optional group's option) would silently run the default: refuse it."""
    from importlib import resources

    import difflib

    for o in overrides:
        key, _, value = o.lstrip("+").partition("=")
        if key not in OPTIONAL_GROUPS or not value or value == "null":
            continue
        folder = resources.files(CONFIG_MODULE).joinpath(key)
        options = sorted(f.name[:-5] for f in folder.iterdir() if f.name.endswith(".yaml"))
        for v in (x.strip() for x in value.split(",")):
            if v and v not in options and not any(ch in v for ch in "()*?[]"):
                close = difflib.get_close_matches(v, options, n=1)
                hint = f"did you mean {key}={close[0]}? " if close else ""
                raise UserError(f"{key}={shorten(v, 40)} is not an option of '{key}'; {hint}available: {', '.join(options)}")


def _big_number(overrides: list[str]) -> str | None:
    return next((o.split("=", 1)[0] for o in overrides if re.fullmatch(r"[+~]?[\w.]+=-?\d{300,}", o)), None)


def compose(overrides: list[str], return_hydra_config: bool = False) -> DictConfig:
    """Compose the run config for ``overrides`` and resolve its interpolations (outside hydra.*);
    raise UserError with one line on failure."""
    check_optional_groups(overrides)
    big = _big_number(overrides)
    if big:
        raise UserError(f"{big.lstrip('+~')}= holds a number with hundreds of digits; give a value in its range "
                        "(`dendsn train --help`)")
    GlobalHydra.instance().clear()
    try:
        with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
            cfg = hydra_compose(CONFIG_NAME, overrides=overrides, return_hydra_config=return_hydra_config)
        nodes = (DictConfig, ListConfig)
        for key in sorted(cfg.keys(), key=lambda k: isinstance(cfg._get_node(k), nodes)):   # root values first
            if key == "hydra":
                continue
            node = cfg._get_node(key)
            if isinstance(node, nodes):
                OmegaConf.to_container(node, resolve=True)
            else:
                cfg[key]                                    # resolves an interpolated root value
        return cfg
    except (HydraException, OmegaConfBaseException) as e:
        raise UserError(_unreadable(overrides, e) or explain(e)) from None
    finally:
        GlobalHydra.instance().clear()


def _unreadable(overrides: list[str], e: BaseException) -> str | None:
    """For an override the grammar cannot read: one line that quotes it (Hydra's parser error does not)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    if not isinstance(e, OverrideParseException):
        return None
    first = str(e).strip().splitlines()[0]
    if first.startswith(("LexerNoViableAltException", "Error parsing override")):
        return None                                  # `explain` quotes these already
    parser = OverridesParser.create()
    for o in overrides:
        try:
            parser.parse_override(o)
        except HydraException:
            return (f"{shorten(o, 60)!r} cannot be read ({first}); quote the value (KEY='\"...\"') if it is meant, "
                    "or fix the typo")
    return None


# ---------------------------------------------------------------- sweeps (checked before Hydra starts)
SAMPLING_SWEEPERS = ("optuna",)   # sweepers that draw values from distributions (interval, tag)
STRUCTURE_LIMIT = 128             # combinations of swept group options composed in full, at most
VALUE_CHECKS_ON_EVERY_BASE = 2000  # beyond this, swept values are checked against the first combination only


def _register_sweeper_schemas() -> None:
    """`hydra/sweeper=optuna` for dendsn: the plugin's config with direction maximize (the objective is
    a job's best validation accuracy) and n_jobs 1 (each trial learns from all before it), 20 trials.
    Stored over the plugin's own entry, after Hydra's plugin scan (which runs once per process and
    executes the plugin's config module, storing its defaults). A conf/hydra/sweeper/optuna.yaml
    cannot do this: Hydra refuses a config file named like a schema that has a defaults list."""
    from hydra.core.plugins import Plugins

    try:
        from hydra_plugins.hydra_optuna_sweeper.config import Direction, OptunaSweeperConf
    except ImportError:  # not installed: hydra/sweeper=optuna then fails with one line
        return
    Plugins.instance()
    ConfigStore.instance().store(group="hydra/sweeper", name="optuna", provider="dendsn",
                                 node=OptunaSweeperConf(direction=Direction.maximize, n_trials=20, n_jobs=1))


_register_sweeper_schemas()


def _register_launcher_schemas() -> None:
    """dendsn's defaults over the launcher plugins' own (stored after their plugin scan, as for Optuna): a
    dendsn job resumes from its last.pt when it is started again, so submitit may requeue a job that hits
    its time limit (``max_num_timeout`` 3 on SLURM) and the local executor gets a week, not an hour; a Ray
    sweep starts no dashboard. Every key can still be set: hydra.launcher.timeout_min=240."""
    from hydra.core.plugins import Plugins

    Plugins.instance()
    store = ConfigStore.instance()
    try:
        from hydra_plugins.hydra_submitit_launcher.config import LocalQueueConf, SlurmQueueConf

        store.store(group="hydra/launcher", name="submitit_local", provider="dendsn",
                    node=LocalQueueConf(timeout_min=10080))
        store.store(group="hydra/launcher", name="submitit_slurm", provider="dendsn",
                    node=SlurmQueueConf(max_num_timeout=3))
    except ImportError:                         # not installed: hydra/launcher=submitit_* fails in one line
        pass
    try:
        from hydra_plugins.hydra_ray_launcher._config import RayConf, RayLauncherConf

        store.store(group="hydra/launcher", name="ray", provider="dendsn", node=RayLauncherConf(
            ray=RayConf(init={"address": None, "include_dashboard": False})))
    except ImportError:
        pass


_register_launcher_schemas()


@dataclass
class SweepCheck:
    overrides: list[str]       # what to hand to Hydra (for a sampler, globs spelt out as choices)
    sweeper: str               # the hydra/sweeper option
    exclude_keys: list[str]    # hydra.job.config.override_dirname.exclude_keys of the composed config
    checked: int               # configs validated


def _parse(overrides: list[str]):
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        return OverridesParser.create().parse_overrides(overrides)
    except HydraException as e:
        raise UserError(explain(e)) from None


def _is_glob(o) -> bool:
    from hydra.core.override_parser.types import ValueType

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
                raise UserError(f"{line} matches no option of '{o.key_or_group}'; available: {', '.join(options) or 'none'}")
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
    from hydra.core.override_parser.overrides_parser import OverridesParser

    o = OverridesParser.create().parse_override(line)
    key = o.key_or_group
    return (o.is_hydra_override() or o.package is not None or "/" in key or key.endswith("_target_")
            or bool(config_loader.get_group_options(key)))


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
    import copy

    from hydra._internal.config_loader_impl import ConfigLoaderImpl

    sweeper = sweeper_of(overrides)
    sampler = sweeper in SAMPLING_SWEEPERS
    GlobalHydra.instance().clear()
    try:
        with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
            loader = GlobalHydra.instance().config_loader()
            per_key = expand_sweep(overrides, sampler=sampler, config_loader=loader)
            if sampler:   # Optuna's parser has no config loader for glob(): hand it the options
                overrides = [_choice_line(lines) if _is_glob(o) else line
                             for o, line, lines in zip(_parse(overrides), overrides, per_key)]
            structural = [lines for lines in per_key if len(lines) > 1 and _is_structural(lines[0], loader)]
            values = [lines for lines in per_key if len(lines) > 1 and not _is_structural(lines[0], loader)]
            fixed = [lines[0] for lines in per_key if len(lines) == 1]
            n_struct = 1
            for lines in structural:
                n_struct *= len(lines)
            if n_struct <= STRUCTURE_LIMIT:
                combos = [list(c) for c in itertools.product(*structural)]
            else:
                firsts = [lines[0] for lines in structural]
                combos = [firsts] + [firsts[:i] + [v] + firsts[i + 1:]
                                     for i, lines in enumerate(structural) for v in lines[1:]]
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
                    del cfg["hydra"]             # not validated; copying it would double the time per value
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
    finally:
        GlobalHydra.instance().clear()
    return SweepCheck(overrides, sweeper, exclude_keys, checked)


def _choice_line(values: list[str]) -> str:
    key = values[0].split("=", 1)[0]
    return f"{key}=choice({','.join(v.split('=', 1)[1] for v in values)})"


def _interval_hint(message: str, overrides: list[str]) -> str:
    if "expected Integer" in message and "interval(" in " ".join(overrides):
        message += "; interval() draws floats: for an integer key use range(START,STOP[,STEP])"
    return message


def to_yaml(cfg: DictConfig) -> str:
    return OmegaConf.to_yaml(cfg)

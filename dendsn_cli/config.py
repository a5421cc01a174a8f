"""The config schema, its validation, and composition outside `hydra.main`.

The root keys are a structured config (`DendsnConfig` in Hydra's ConfigStore), so a misspelt root
key or a wrong type fails at composition. Group options are YAML files with a ``_target_``; their
keys are checked against the target's signature (`check_node`): an unknown key or a value of the
wrong type names the key. Range checks of root keys live in `validate`; range checks of model
parameters live in the model constructors (they raise ValueError, turned into one line here).

`compose` runs the same composition as `dendsn train` (used by `dendsn eval` and to validate a run
before Hydra starts), and `explain` turns Hydra/OmegaConf exceptions into one line.
"""

from __future__ import annotations

import collections.abc
import inspect
import itertools
import re
import typing
from dataclasses import dataclass
from typing import Any, Optional

from hydra import compose as hydra_compose
from hydra import initialize_config_module
from hydra.core.config_store import ConfigStore
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import HydraException
from hydra._internal.utils import _locate
from omegaconf import DictConfig, ListConfig, MISSING, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from .errors import UserError

CONFIG_MODULE = "dendsn_conf"
CONFIG_NAME = "train"
GROUPS = ("dataset", "encoder", "network", "neuron", "wiring", "learning", "optim", "logger")


@dataclass
class DendsnConfig:
    dataset: Any = MISSING
    encoder: Any = MISSING
    network: Any = MISSING
    neuron: Any = MISSING
    wiring: Any = None
    learning: Any = MISSING
    optim: Any = MISSING
    logger: Any = MISSING
    experiment: Any = None
    seed: int = 0
    device: str = "auto"
    epochs: int = 10
    T: int = 8
    batch_size: int = 128
    init_rate: Optional[float] = None
    amp: str = "none"
    lr_schedule: str = "none"
    progress: bool = True
    profile: bool = False
    resume: Optional[str] = None
    ckpt: Optional[str] = None


ConfigStore.instance().store(name="dendsn_schema", node=DendsnConfig)

_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


def validate(cfg: DictConfig) -> None:
    """Range checks of the root keys and signature checks of every group; raise UserError."""
    known = set(DendsnConfig.__dataclass_fields__) | {"hydra"}
    for key in cfg.keys():
        if key not in known:
            raise UserError(f"{key} is not a known key; the root keys are: {', '.join(sorted(known - {'hydra'}))}")
    for key in ("T", "batch_size", "epochs"):
        if cfg[key] < 1:
            raise UserError(f"{key}={cfg[key]} is out of range: {key} must be >= 1")
    if cfg.init_rate is not None and not 0.0 < cfg.init_rate < 1.0:
        raise UserError(f"init_rate={cfg.init_rate} is out of range: it must be in (0, 1) (spikes per neuron and step), or null to keep the plain initialisation")
    if not _DEVICE.match(str(cfg.device)):
        raise UserError(f"device={cfg.device!r} is not known: use auto, cpu, cuda or cuda:N")
    if cfg.amp not in ("none", "bf16", "fp16"):
        raise UserError(f"amp={cfg.amp!r} is not known: use none, bf16 or fp16")
    if cfg.lr_schedule not in ("none", "cosine"):
        raise UserError(f"lr_schedule={cfg.lr_schedule!r} is not known: use none or cosine")
    if cfg.get("wiring") is not None and "wiring" not in cfg.neuron:
        raise UserError(
            f"wiring applies to dendritic neurons only, and neuron={choice_name(cfg, 'neuron')} is a point neuron: "
            "pick a dendritic neuron (e.g. neuron=dend_lif) or drop the wiring override"
        )
    for group in GROUPS:
        node = cfg.get(group)
        if isinstance(node, DictConfig):
            check_node(node, group)


def choice_name(cfg: DictConfig, group: str) -> str:
    try:
        from hydra.core.hydra_config import HydraConfig

        return str(HydraConfig.get().runtime.choices.get(group))
    except ValueError:
        target = str(cfg[group].get("_target_", "?"))
        return target.rsplit(".", 1)[-1]


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


def explain(e: BaseException) -> str:
    """One line for a Hydra / OmegaConf composition error."""
    msg = str(e).strip()
    if e.__cause__ is not None:
        msg += "\n" + str(e.__cause__).strip()
    m = re.search(r"Could not find '([^/']+)/([^']+)'.*?Available options in '[^']+':\n((?:\t[^\n]*\n?)*)", msg, re.S)
    if m:
        group, option, rest = m.groups()
        options = ", ".join(o.strip() for o in rest.split("\n") if o.strip())
        return f"{group}={option} is not an option of '{group}'; available: {options}"
    m = re.search(r"Could not (?:find|load) '([^/']+)/([^']+)'", msg)
    if m:
        return f"{m.group(1)}={m.group(2)} is not an option of '{m.group(1)}'; run `dendsn list {m.group(1)}`"
    m = re.search(r"Could not override '([^']+)'\.\s*No match in the defaults list", msg)
    if m:
        key = m.group(1)
        if key == "wiring":
            return ("wiring applies to dendritic neurons only; pick a dendritic neuron (e.g. neuron=dend_lif) "
                    "or drop the wiring override")
        return f"{key} is not a config group of this run; run `dendsn list` for the groups"
    m = re.search(r"Key '([^']+)' is not in struct\s*full_key: ([^\s]+)", msg, re.S)
    if m:
        return f"{m.group(2)} is not a known key; check its spelling (`dendsn train --cfg job` prints every key)"
    m = re.search(r"Value '([^']*)' (?:of type '[^']+' )?could not be converted to (\w+)\s*full_key: ([^\s]+)", msg)
    if m:
        return f"{m.group(3)}={m.group(1)!r} has the wrong type: expected {m.group(2)}"
    m = re.search(r"Ambiguous value for argument '([^']+)'", msg)
    if m:
        return f"{m.group(1)} is a sweep: add -m (dendsn train -m {m.group(1)}) to run one job per value"
    first = msg.splitlines()[0] if msg else type(e).__name__
    return first


def compose(overrides: list[str], return_hydra_config: bool = False) -> DictConfig:
    """Compose the run config for ``overrides``; raise UserError with one line on failure."""
    GlobalHydra.instance().clear()
    try:
        with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
            return hydra_compose(CONFIG_NAME, overrides=overrides, return_hydra_config=return_hydra_config)
    except (HydraException, OmegaConfBaseException) as e:
        raise UserError(explain(e)) from None
    finally:
        GlobalHydra.instance().clear()


def expand_sweep(overrides: list[str], limit: int = 64) -> list[list[str]]:
    """The override lists of the jobs a multirun would launch (at most ``limit`` of them)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException as e:
        raise UserError(explain(e)) from None
    choices = []
    for o in parsed:
        key = o.get_key_element()
        if o.is_sweep_override():
            choices.append([f"{key}={v}" for v in o.sweep_string_iterator()])
        else:
            choices.append([o.input_line])
    return [list(c) for c in itertools.islice(itertools.product(*choices), limit)]


def to_yaml(cfg: DictConfig) -> str:
    return OmegaConf.to_yaml(cfg)

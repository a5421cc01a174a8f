"""The config tree's options, read from conf/ (shipped as the package ``dendsn_conf``): the one registry of
choices, and how a composed config names the option it chose (`choice_name`)."""

from __future__ import annotations

import re
from importlib import resources

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from .schema import CONFIG_MODULE


def group_options(group: str) -> list[str]:
    """The option names of ``group`` (e.g. 'neuron/soma'), sorted; [] for no such group."""
    folder = resources.files(CONFIG_MODULE).joinpath(*group.split("/"))
    if not folder.is_dir():
        return []
    return sorted(f.name[:-5] for f in folder.iterdir() if f.name.endswith(".yaml"))


def option_targets(group: str) -> list:
    """(option, _target_) of every option file of ``group``."""
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


def options_with_subgroup(group: str, sub: str) -> list[str]:
    """The options of ``group`` whose defaults list chooses its subgroup ``sub`` (neuron=dendritic for neuron/soma)."""
    folder = resources.files(CONFIG_MODULE).joinpath(*group.split("/"))
    if not folder.joinpath(sub).is_dir():
        return []
    return sorted(
        f.name[:-5]
        for f in folder.iterdir()
        if f.name.endswith(".yaml") and re.search(rf"^\s*-\s*{re.escape(sub)}\s*:", f.read_text(), re.M)
    )


def choice_name(cfg: DictConfig, group: str) -> str:
    """The option of ``group`` that ``cfg`` chose, as a user writes it (neuron=lif): from Hydra's runtime
    choices, else from the config's own hydra node, else the option whose file names the same target."""
    choices = OmegaConf.select(cfg, "hydra.runtime.choices", default=None) if "hydra" in cfg else None
    if choices is not None and choices.get(group) is not None:  # the config's own record first
        return str(choices.get(group))
    try:
        return str(HydraConfig.get().runtime.choices.get(group))
    except ValueError:
        pass
    node = cfg.get(group)
    target = str(node.get("_target_", "?")) if isinstance(node, DictConfig) else "?"
    if isinstance(node, DictConfig) and isinstance(node.get("name"), str) and group == "dataset":
        return node.name
    options = [name for name, t in option_targets(group) if t == target]
    return options[0] if len(options) == 1 else target.rsplit(".", 1)[-1]

"""Composed configs of every option of every config group, through the real config tree (`dendsn_conf`).

One composition per option, every other group at its default: `train` for the groups of conf/ (and
neuron/soma options under neuron=dendritic, and the experiment presets), `simulate` for the stimulus
options (and its defaults). Interpolations are resolved where they resolve (`${wiring}`, `${dt}`);
the `hydra` node is left out.
"""

from __future__ import annotations

from importlib import resources

CONFIG_MODULE = "dendsn_conf"
SKIP_GROUPS = ("hydra",)  # Hydra's own settings, not dendsn's


def register_schemas() -> None:
    """Import what puts dendsn's structured configs (`dendsn_schema`, `dendsn_simulate_schema`) and its
    resolvers into Hydra's global stores, as `dendsn train` / `dendsn simulate` do."""
    import dendsn_cli.commands.simulate  # noqa: F401
    import dendsn_cli.config  # noqa: F401


def options(group: str) -> list[str]:
    folder = resources.files(CONFIG_MODULE).joinpath(*group.split("/"))
    return sorted(f.name[:-5] for f in folder.iterdir() if f.name.endswith(".yaml"))


def groups() -> list[str]:
    root = resources.files(CONFIG_MODULE)
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(("_", *SKIP_GROUPS)))


def cases() -> dict[str, tuple[str, list[str]]]:
    """{case name: (config name, overrides)} for every composition that is recorded."""
    out = {"train": ("train", []), "simulate": ("simulate", [])}
    for group in groups():
        for option in options(group):
            if group == "stimulus":
                out[f"simulate stimulus={option}"] = ("simulate", [f"stimulus={option}"])
            else:
                out[f"train {group}={option}"] = ("train", [f"{group}={option}"])
    for soma in options("neuron/soma"):
        out[f"train neuron=dendritic neuron/soma={soma}"] = ("train", ["neuron=dendritic", f"neuron/soma={soma}"])
    out["simulate neuron=dendritic"] = ("simulate", ["neuron=dendritic"])
    return out


def to_plain(cfg) -> dict:
    """The config as plain data, interpolations resolved (left as written where one does not resolve)."""
    from omegaconf import OmegaConf

    cfg = OmegaConf.masked_copy(cfg, [k for k in cfg.keys() if k != "hydra"])
    try:
        return OmegaConf.to_container(cfg, resolve=True)
    except Exception:
        return OmegaConf.to_container(cfg, resolve=False)


def compose_many(todo) -> dict[tuple, dict]:
    """{(config name, overrides tuple): composed config as plain data, or {"error": message}} for each
    (config name, overrides) of ``todo`` (each composed once)."""
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    register_schemas()
    out = {}
    GlobalHydra.instance().clear()
    try:
        with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
            for config, overrides in todo:
                key = (config, tuple(overrides))
                if key not in out:
                    try:
                        out[key] = to_plain(compose(config, overrides=list(overrides)))
                    except Exception as e:  # recorded as it is: the same failure must stay
                        out[key] = {"error": f"{type(e).__name__}: {e}".splitlines()[0]}
    finally:
        GlobalHydra.instance().clear()
    return out


def compose_all() -> dict[str, dict]:
    """{case name: composed config as plain data} for every case of `cases`."""
    todo = cases()
    composed = compose_many(todo.values())
    return {name: composed[(c, tuple(o))] for name, (c, o) in todo.items()}

"""One source for each default: the schema (dendsn_cli.config.DendsnConfig) holds types, conf/train.yaml the
defaults; shared YAML blocks are included, not copied."""

import dataclasses
import typing
from importlib import resources

from omegaconf import MISSING, OmegaConf

from dendsn_cli.config import GROUPS, DendsnConfig, compose

CONF = resources.files("dendsn_conf")


def _of_type(value, hint) -> bool:
    if typing.get_origin(hint) is typing.Union:
        return any(_of_type(value, a) for a in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def _leaves(schema, yaml, path=""):
    """(key, type hint, schema default, YAML value) of every non-group field, nested dataclasses included."""
    hints = typing.get_type_hints(schema)
    for f in dataclasses.fields(schema):
        key = f"{path}{f.name}"
        if f.name in GROUPS or f.name == "experiment":
            continue
        assert f.name in yaml, f"{key} is in the schema but not in conf/train.yaml"
        if dataclasses.is_dataclass(hints[f.name]):
            yield from _leaves(hints[f.name], yaml[f.name], f"{key}.")
            continue
        yield key, hints[f.name], f.default, yaml[f.name]


def test_schema_holds_types_and_yaml_the_defaults():
    yaml = OmegaConf.to_container(OmegaConf.load(CONF.joinpath("train.yaml")))
    leaves = list(_leaves(DendsnConfig, yaml))
    assert {k for k, *_ in leaves} >= {
        "seed",
        "init_rate",
        "init_readout_rate",
        "init_lr_scale",
        "lr_schedule",
        "early_stop.patience",
        "early_stop.min_delta",
    }
    for key, hint, default, value in leaves:
        assert _of_type(value, hint), f"conf/train.yaml: {key}={value!r} is not a {hint}"
        assert default is MISSING or default == value, (
            f"the schema's default {key}={default!r} differs from conf/train.yaml's {value!r}"
        )
    root_keys = {k for k in yaml if k not in ("defaults", "hydra")}
    assert root_keys <= {f.name for f in dataclasses.fields(DendsnConfig)}


def test_group_fields_are_options_or_absent():
    """A group field is chosen in train.yaml's defaults list (or by another option), else None in the schema."""
    yaml = OmegaConf.to_container(OmegaConf.load(CONF.joinpath("train.yaml")))
    chosen = {next(iter(d)).replace("optional ", "") for d in yaml["defaults"] if isinstance(d, dict)}
    for f in dataclasses.fields(DendsnConfig):
        if f.name in GROUPS or f.name == "experiment":
            assert f.name in chosen or f.default is None, f.name


def _keys(name: str) -> list[str]:
    return [k for k in OmegaConf.load(CONF.joinpath(*name.split("/"))) if k != "defaults"]


def test_shared_blocks_are_included_not_copied():
    dendrite, spike, local = _keys("_dendrite.yaml"), _keys("_dendrite_spike.yaml"), _keys("_local_rule.yaml")
    for name, blocks in (
        ("neuron/dend_lif.yaml", ("_dendrite", "_dendrite_spike")),
        ("neuron/dend_if.yaml", ("_dendrite", "_dendrite_spike")),
        ("neuron/dendritic.yaml", ("_dendrite",)),
        ("learning/stdp.yaml", ("_local_rule",)),
        ("learning/semi_stdp.yaml", ("_local_rule",)),
        ("learning/rstdp.yaml", ("_local_rule",)),
    ):
        own = set(_keys(name))
        text = CONF.joinpath(*name.split("/")).read_text()
        for block, keys in (("_dendrite", dendrite), ("_dendrite_spike", spike), ("_local_rule", local)):
            if block in blocks:
                assert f"- /{block}@_here_\n" in text, name
                assert not own & set(keys), f"{name} copies {sorted(own & set(keys))} of {block}.yaml"


def test_shared_blocks_compose_in_place():
    """The included keys land where the options' own files had them (the composed config is unchanged)."""
    neuron = compose(["neuron=dend_lif"]).neuron
    assert list(neuron)[:9] == [
        "_target_",
        "_partial_",
        "wiring",
        "tau",
        "decay_input",
        "v_threshold",
        "v_reset",
        "detach_reset",
        "compartment",
    ]
    assert list(neuron)[-2:] == ["surrogate", "firing"] and neuron.compartment.tau_d == 2.0
    learning = compose(["learning=stdp"]).learning
    assert list(learning)[:2] == ["_target_", "tau_pre"] and list(learning)[-1] == "per_step_loss"
    assert learning.wta == 1 and learning.readout == "delta"

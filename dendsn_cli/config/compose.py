"""Composition outside `hydra.main`, and one line for each way it fails.

`compose` runs the same composition as `dendsn train` (used by `dendsn eval` and to validate a run before
Hydra starts); `explain` turns Hydra/OmegaConf exceptions into one line.
"""

from __future__ import annotations

import difflib
import re

from hydra import compose as hydra_compose
from hydra import initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException, OverrideParseException
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from ..errors import UserError, shorten
from .options import group_options, options_with_subgroup
from .schema import CONFIG_MODULE, CONFIG_NAME, OPTIONAL_GROUPS


def compose(overrides: list[str], return_hydra_config: bool = False) -> DictConfig:
    """Compose the run config for ``overrides`` and resolve its interpolations (outside hydra.*);
    raise UserError with one line on failure."""
    check_optional_groups(overrides)
    big = big_number(overrides)
    if big:
        raise UserError(
            f"{big.lstrip('+~')}= holds a number with hundreds of digits; give a value in its range "
            "(`dendsn train --help`)"
        )
    GlobalHydra.instance().clear()
    try:
        with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
            cfg = hydra_compose(CONFIG_NAME, overrides=overrides, return_hydra_config=return_hydra_config)
        nodes = (DictConfig, ListConfig)
        for key in sorted(cfg.keys(), key=lambda k: isinstance(cfg._get_node(k), nodes)):  # root values first
            if key == "hydra":
                continue
            node = cfg._get_node(key)
            if isinstance(node, nodes):
                OmegaConf.to_container(node, resolve=True)
            else:
                cfg[key]  # resolves an interpolated root value
        return cfg
    except (HydraException, OmegaConfBaseException) as e:
        raise UserError(unreadable(overrides, e) or explain(e)) from None
    finally:
        GlobalHydra.instance().clear()


def unreadable(overrides: list[str], e: BaseException) -> str | None:
    """For an override the grammar cannot read: one line that quotes it (Hydra's parser error does not)."""
    if not isinstance(e, OverrideParseException):
        return None
    first = str(e).strip().splitlines()[0]
    if first.startswith(("LexerNoViableAltException", "Error parsing override")):
        return None  # `explain` quotes these already
    parser = OverridesParser.create()
    for o in overrides:
        try:
            parser.parse_override(o)
        except HydraException:
            return (
                f"{shorten(o, 60)!r} cannot be read ({first}); quote the value (KEY='\"...\"') if it is meant, "
                "or fix the typo"
            )
    return None


def big_number(overrides: list[str]) -> str | None:
    return next((o.split("=", 1)[0] for o in overrides if re.fullmatch(r"[+~]?[\w.]+=-?\d{300,}", o)), None)


def check_optional_groups(overrides: list[str]) -> None:
    """``experiment=nope`` (a typo of an optional group's option) would silently run the default: refuse it."""
    for o in overrides:
        key, _, value = o.lstrip("+").partition("=")
        if key not in OPTIONAL_GROUPS or not value or value == "null":
            continue
        options = group_options(key)
        for v in (x.strip() for x in value.split(",")):
            if v and v not in options and not any(ch in v for ch in "()*?[]"):
                close = difflib.get_close_matches(v, options, n=1)
                hint = f"did you mean {key}={close[0]}? " if close else ""
                raise UserError(
                    f"{key}={shorten(v, 40)} is not an option of '{key}'; {hint}available: {', '.join(options)}"
                )


def explain(e: BaseException) -> str:
    """One line for a Hydra / OmegaConf composition error."""
    msg = str(e).strip()
    if e.__cause__ is not None:
        msg += "\n" + str(e.__cause__).strip()
    line = _explain_choice(msg) or _explain_value(msg)
    if line is not None:
        return line
    return msg.splitlines()[0] if msg else type(e).__name__


def _explain_choice(msg: str) -> str | None:
    """A group option or a config group that cannot be chosen."""
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
            return (
                "wiring applies to dendritic neurons only; pick a dendritic neuron (e.g. neuron=dend_lif) "
                "or drop the wiring override"
            )
        parent, _, sub = key.rpartition("/")
        hosts = options_with_subgroup(parent, sub) if parent else []
        if hosts:  # neuron/soma: a group inside some neuron options
            return (
                f"{key} is chosen inside {' or '.join(f'{parent}={h}' for h in hosts)}; "
                f"add {parent}={hosts[0]} (e.g. {parent}={hosts[0]} {key}=...)"
            )
        return f"{key} is not a config group of this run; run `dendsn list` for the groups"
    m = re.search(r"Could not override '(hydra\.sweeper\.[^']+)'", msg)
    if m:
        return (
            f"{m.group(1)} is not a setting of this sweeper; Optuna's settings need hydra/sweeper=optuna "
            "(`dendsn train -m hydra/sweeper=optuna --cfg hydra` prints them)"
        )
    return None


def _explain_value(msg: str) -> str | None:
    """A key, a value or an override that cannot be read or set."""
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
        return (
            f"{shorten(m.group(1), 60)!r} is not an override: write KEY=VALUE (e.g. neuron=lif), "
            "+KEY=VALUE to add a key, ~KEY to remove one"
        )
    m = re.search(r"LexerNoViableAltException: (.*)\n(\s*)\^", msg)
    if m:
        text, pad = m.group(1), len(m.group(2)) - len("LexerNoViableAltException: ")
        bad = text[pad] if 0 <= pad < len(text) else "?"
        return (
            f"{shorten(text, 60)!r} cannot be read: {bad!r} is not allowed in an unquoted value; quote the "
            f"value (KEY='\"...\"') if it is meant, or fix the typo"
        )
    m = re.search(r"Interpolation key '([^']*)' not found\s*full_key: ([^\s]+)", msg)
    if m:
        return (
            f"{m.group(2)}: its value refers to ${{{m.group(1)}}}, which is not a key of the config; "
            "give a plain value, or an interpolation of a key that exists"
        )
    m = re.search(r"Environment variable '([^']*)' not found\W*full_key: ([^\s]+)", msg)
    if m:
        return (
            f"{m.group(2)}: its value reads the environment variable {m.group(1)}, which is not set; export it, "
            f"or give a default: '${{oc.env:{m.group(1)},VALUE}}'"
        )
    m = re.search(r"Missing mandatory value: ([\w.]+)", msg)
    if m:  # only a config group is mandatory in the schema (~neuron)
        key = m.group(1)
        return f"{key} has no option, and a run needs one (removed with ~{key}?); pick one, e.g. `dendsn list {key}`"
    m = re.search(r"Ambiguous value for argument '([^']+)'", msg)
    if m:
        return f"{m.group(1)} is a sweep: add -m (dendsn train -m {m.group(1)}) to run one job per value"
    return None


def to_yaml(cfg: DictConfig) -> str:
    return OmegaConf.to_yaml(cfg)

"""The config: its schema (types; the defaults are in conf/), composition, validation and sweeps.

schema.py        DendsnConfig: the root keys' types, stored in Hydra's ConfigStore
compose.py       compose() as `dendsn train` does, explain() for one-line composition errors
validate.py      validate(): root key ranges, signature checks, the rules between groups
signature.py     check_node(): a group option's keys against its class's signature
capabilities.py  the rules between groups, read from what each class declares
checks.py        the validator family: one message format for every parameter check
options.py       the config tree's options; choice_name()
sweeps.py        check_sweep() / expand_sweep(): every job of a -m sweep checked before it starts
"""

from .capabilities import declared, provides
from .compose import big_number, check_optional_groups, compose, explain, to_yaml, unreadable
from .options import choice_name, group_options, option_targets, options_with_subgroup
from .schema import CONFIG_MODULE, CONFIG_NAME, GROUPS, OPTIONAL_GROUPS, DendsnConfig, EarlyStop
from .signature import check_node, locate
from .sweeps import (
    SAMPLING_SWEEPERS,
    STRUCTURE_LIMIT,
    VALUE_CHECKS_ON_EVERY_BASE,
    SweepCheck,
    check_sweep,
    expand_sweep,
    sweeper_of,
)
from .validate import DEVICE_PATTERN, check_root, check_step_mode, validate

__all__ = [
    "CONFIG_MODULE",
    "CONFIG_NAME",
    "GROUPS",
    "OPTIONAL_GROUPS",
    "SAMPLING_SWEEPERS",
    "STRUCTURE_LIMIT",
    "VALUE_CHECKS_ON_EVERY_BASE",
    "DEVICE_PATTERN",
    "DendsnConfig",
    "EarlyStop",
    "SweepCheck",
    "big_number",
    "check_node",
    "check_optional_groups",
    "check_root",
    "check_step_mode",
    "check_sweep",
    "choice_name",
    "compose",
    "declared",
    "expand_sweep",
    "explain",
    "group_options",
    "locate",
    "option_targets",
    "options_with_subgroup",
    "provides",
    "sweeper_of",
    "to_yaml",
    "unreadable",
    "validate",
]

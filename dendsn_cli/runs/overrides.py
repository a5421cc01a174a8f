"""Override strings (``key=value``) as the command line gives them and as Hydra reads them."""

from __future__ import annotations

import re


def quoted(value: str) -> str:
    """``value`` as an override value: quoted where it holds what the override grammar reads, like the
    '=' and ',' of a sweep job dir (`0_neuron=lif,seed=0`)."""
    if re.fullmatch(r"[\w./\-+@]+", value):
        return value
    value = re.sub(r"(\\+)(?='|$)", lambda m: m.group(1) * 2, value)  # backslashes before a quote / the end
    return "'" + value.replace("'", "\\'").replace("${", "\\${") + "'"


def value_of(overrides: list[str], key: str) -> str | None:
    """The (unquoted) value of ``key=...`` among ``overrides``, or None."""
    from hydra.core.override_parser.overrides_parser import OverridesParser  # noqa: PLC0415  (slow to import)

    line = next((o for o in overrides if o.startswith(f"{key}=")), None)
    if line is None:
        return None
    try:
        return str(OverridesParser.create().parse_override(line).value())
    except Exception:
        return line.split("=", 1)[1]

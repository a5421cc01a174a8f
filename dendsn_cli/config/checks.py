"""The validator family: every parameter check of the config and of the components a user swaps (data,
encoders, read-outs) is written with these, so a bad value reads the same way wherever it is caught.

Predicates (True/False, no message):
    is_int(v)                     an integer, not a bool
    is_real(v)                    a finite real number, not a bool
    is_probability(v)             a real number in [0, 1]
    within(v, above=, minimum=, maximum=)   a finite number with v > above, v >= minimum, v <= maximum

Messages (one line each; the key as a user writes it, the value as given, then what to do):
    invalid(key, v, why, advice)  UserError  "KEY=V is invalid: WHY; ADVICE"   (no advice: "KEY=V is invalid: WHY")
    out_of_range(key, v, rule)    UserError  "KEY=V is out of range: RULE"
    not_known(key, v, use)        UserError  "KEY=V is not known: use USE"
    must_be(key, v, what)         ValueError "KEY must be WHAT (got V)"; named=True: "(got KEY=V)"
                                             (a constructor's argument: the caller that built it from a config
                                             node names the group)

Checks (raise the message when the predicate fails, else return the value):
    require(ok, key, v, what)     invalid(key, v, f"it must be {what}", "fix it in the config or on the command line")
    positive(key, v, advice)      a finite number > 0, as float;
                                  else invalid(key, v, "it must be a finite number > 0", advice)
    number(key, v, above=, minimum=, maximum=)   a finite number in bounds, as float; else must_be(...)
"""

from __future__ import annotations

import math
import numbers

from ..errors import UserError


def is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_real(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def is_probability(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and 0.0 <= value <= 1.0


def within(value, above: float | None = None, minimum: float | None = None, maximum: float | None = None) -> bool:
    return (
        is_real(value)
        and (above is None or value > above)
        and (minimum is None or value >= minimum)
        and (maximum is None or value <= maximum)
    )


def invalid(key: str, value, why: str, advice: str | None = None) -> UserError:
    return UserError(f"{key}={value!r} is invalid: {why}" + (f"; {advice}" if advice else ""))


def out_of_range(key: str, value, rule: str) -> UserError:
    return UserError(f"{key}={value} is out of range: {rule}")


def not_known(key: str, value, use: str) -> UserError:
    return UserError(f"{key}={value!r} is not known: use {use}")


def must_be(key: str, value, what: str, named: bool = False) -> ValueError:
    return ValueError(f"{key} must be {what} (got {f'{key}=' if named else ''}{value!r})")


def require(ok: bool, key: str, value, what: str) -> None:
    """Raise a one-line UserError for config key ``key`` unless ``ok``."""
    if not ok:
        raise invalid(key, value, f"it must be {what}", "fix it in the config or on the command line")


def positive(key: str, value, advice: str) -> float:
    if not (is_real(value) and value > 0):
        raise invalid(key, value, "it must be a finite number > 0", advice)
    return float(value)


def number(
    key: str, value, *, above: float | None = None, minimum: float | None = None, maximum: float | None = None
) -> float:
    """A finite number within the bounds, as float; else ValueError "KEY must be a number > A and <= M (got V)"."""
    if not within(value, above, minimum, maximum):
        bounds = [
            f"> {above}" if above is not None else "",
            f">= {minimum}" if minimum is not None else "",
            f"<= {maximum}" if maximum is not None else "",
        ]
        raise must_be(key, value, f"a number {' and '.join(b for b in bounds if b)}")
    return float(value)

"""The one exception type for user mistakes.

Anything a user can get wrong (a config value, a missing dataset, a bad
checkpoint) raises `UserError` with one line that says what is wrong, which
key, and what to do. The CLI catches it, prints the line, and exits non-zero.
"""


class UserError(Exception):
    """A mistake the user can fix; its message is printed as one line."""


def shorten(text, limit: int = 80) -> str:
    """``text`` cut to ``limit`` characters, so a 5,000-character path or value keeps the message one
    readable line."""
    text = str(text)
    return text if len(text) <= limit else f"{text[: limit - 30]}...{text[-20:]} ({len(text)} characters)"

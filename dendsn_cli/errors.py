"""The one exception type for user mistakes.

Anything a user can get wrong (a config value, a missing dataset, a bad
checkpoint) raises `UserError` with one line that says what is wrong, which
key, and what to do. The CLI catches it, prints the line, and exits non-zero.
"""


class UserError(Exception):
    """A mistake the user can fix; its message is printed as one line."""

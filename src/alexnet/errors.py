"""The one exception type for user mistakes.

Library code raises :class:`UserError` for anything a user can fix (a bad
path, an unknown key, a checkpoint of another architecture); the command line
prints its message as one line and exits with status 2, never a traceback.
"""

from __future__ import annotations

from typing import Iterable


class UserError(Exception):
    """A mistake the user can fix; ``str(err)`` is one clear sentence."""


def choice_error(argument: str, value: object, allowed: Iterable[object]) -> UserError:
    """Build the standard 'unknown value' error naming the argument and allowed values."""
    allowed_text = ", ".join(repr(a) if not isinstance(a, str) else a for a in allowed)
    return UserError(f"{argument}: unknown value {value!r}; allowed: {allowed_text}")

"""The one exception type for user mistakes.

Library code raises :class:`UserError` for anything a user can fix (a bad
path, an unknown key, a checkpoint of another architecture); the command line
prints its message as one line and exits with status 2, never a traceback.

Library code speaks about values, not about command-line flags: an error about
a parameter names it with ``key`` (the parameter's name, e.g. ``batch_size``, or
a config key such as ``optim.lr``), and the command layer turns the key into the
flag the user typed (``--batch-size``, ``--set optim.lr``).
"""

from __future__ import annotations

from typing import Iterable


class UserError(Exception):
    """A mistake the user can fix; ``str(err)`` is one clear sentence.

    ``key``: the parameter the message is about (a function argument or a
    ``section.key`` of the config), for the command line to name as its flag.
    ``str(err)`` is ``"key: message"`` (or the message alone without a key).
    """

    def __init__(self, message: str, *, key: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.key = key

    def __str__(self) -> str:
        return f"{self.key}: {self.message}" if self.key else self.message


def choice_error(argument: str, value: object, allowed: Iterable[object]) -> UserError:
    """The standard 'unknown value' error for parameter ``argument`` and its allowed values."""
    allowed_text = ", ".join(repr(a) if not isinstance(a, str) else a for a in allowed)
    return UserError(f"unknown value {value!r}; allowed: {allowed_text}", key=argument)

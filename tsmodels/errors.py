"""User-facing errors.

Anything a user can cause (a bad CSV, a missing column, a horizon that is too long, a tensor of
the wrong shape) raises :class:`UserInputError`. Its message names the problem and the fix, and
the ``tsm`` CLI prints it as one line ``error: <what> — <how to fix>`` with exit code 2.
"""

from __future__ import annotations


class UserInputError(ValueError):
    """A problem with what the user gave us, with a suggested fix.

    Args:
        what: what is wrong, e.g. ``"column 'OT' not found in data.csv"``.
        fix: what to do about it, e.g. ``"pass --target with one of: HUFL, HULL"``.
    """

    def __init__(self, what: str, fix: str = ""):
        self.what = what
        self.fix = fix
        super().__init__(f"{what} — {fix}" if fix else what)

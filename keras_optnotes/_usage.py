"""The console script's program name and its usage-error type.

They live below everything that uses them: `keras_optnotes.cli` (the console script),
the sub-commands in `keras_optnotes.commands` and `keras_optnotes.report` import them
from here, so that nothing imports the console script back.
"""

from __future__ import annotations

PROG = "keras-optnotes"


class UsageError(Exception):
    """Bad input from the command line; printed as one line, exit status 2.

    Args:
        message: what was wrong, naming the argument and the value received.
        prog: the program (and sub-command) the message is attributed to.
    """

    def __init__(self, message: str, prog: str = PROG):
        super().__init__(message)
        self.prog = prog

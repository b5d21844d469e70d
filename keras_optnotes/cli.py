"""The `keras-optnotes` console script.

Errors in the user's input end the program with one line on stderr and exit status 2,
never a traceback: argparse's own errors are folded into that line, and commands raise
`UsageError` for the checks argparse cannot make (an unwritable output folder, say).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import pkgutil
import sys
from collections.abc import Sequence

PROG = "keras-optnotes"


class UsageError(Exception):
    """Bad input from the command line; printed as one line, exit status 2."""

    def __init__(self, message: str, prog: str = PROG):
        super().__init__(message)
        self.prog = prog


class _OneLineParser(argparse.ArgumentParser):
    def error(self, message: str):  # noqa: D401 - argparse's signature
        raise UsageError(message, prog=self.prog)


def _command_modules():
    from keras_optnotes import commands

    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if not info.name.startswith("_"):
            yield importlib.import_module(f"keras_optnotes.commands.{info.name}")


@contextlib.contextmanager
def _native_stderr_silenced():
    """Sends file descriptor 2 to /dev/null for the duration.

    TensorFlow's C++ runtime writes several log lines to stderr when it is imported and
    when it first looks for devices, whatever TF_CPP_MIN_LOG_LEVEL says; a CLI error
    must stay one line.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _import_backend_quietly() -> None:
    with _native_stderr_silenced():
        import keras

        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            tf.config.list_physical_devices()


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(
        prog=PROG,
        description="The lecture notes on deep-learning optimization, run in Keras.",
    )
    from keras_optnotes import __version__

    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(
        dest="command", metavar="COMMAND", parser_class=_OneLineParser
    )
    sub.required = True
    for module in _command_modules():
        command = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        module.add_arguments(command)
        command.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    _import_backend_quietly()
    try:
        args = build_parser().parse_args(argv)
        try:
            return int(args._run(args) or 0)
        except UsageError as error:
            if error.prog == PROG:  # name the sub-command whose input was bad
                error.prog = f"{PROG} {args.command}"
            raise
    except UsageError as error:
        message = " ".join(str(error).split())
        print(f"{error.prog}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

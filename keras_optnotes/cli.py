"""The `keras-optnotes` console script.

Errors in the user's input end the program with one line on stderr and exit status 2,
never a traceback: argparse's own errors are folded into that line, and commands raise
`UsageError` for the checks argparse cannot make (an unwritable output folder, say).

The command line is parsed and checked before Keras or TensorFlow is imported, so
`--help` and usage errors are immediate; a Ctrl-C at any point ends the program with
one line and exit status 130.

`native_stderr_silenced()` is the context manager the script imports TensorFlow
under; the tutorials use it too, so that their argument errors stay one line.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.abc
import importlib.util
import os
import pkgutil
import sys
from collections.abc import Iterator, Sequence

from keras_optnotes._tensorflow import missing_tensorflow_message
from keras_optnotes._usage import PROG, UsageError

__all__ = ["PROG", "UsageError", "build_parser", "main", "native_stderr_silenced"]


class _OneLineParser(argparse.ArgumentParser):
    def error(self, message: str):  # noqa: D401 - argparse's signature
        raise UsageError(message, prog=self.prog)


def _command_modules():
    from keras_optnotes import commands

    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if not info.name.startswith("_"):
            yield importlib.import_module(f"keras_optnotes.commands.{info.name}")


@contextlib.contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """Sends file descriptor 2 to /dev/null for the duration (Python's and C's writes).

    TensorFlow's C++ runtime writes several log lines to the descriptor itself when it
    is imported and when it first looks for devices, whatever TF_CPP_MIN_LOG_LEVEL
    says, so redirecting `sys.stderr` would not silence them; a CLI error must stay
    one line.
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


class _QuietLoader(importlib.abc.Loader):
    """Runs another loader's `exec_module` with file descriptor 2 silenced."""

    def __init__(self, loader: importlib.abc.Loader, after=None):
        self._loader = loader
        self._after = after

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        with native_stderr_silenced():
            self._loader.exec_module(module)
            if self._after is not None:
                self._after(module)

    def __getattr__(self, name):  # get_data, get_resource_reader, ... of the original
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._loader, name)


class _QuietTensorFlowFinder(importlib.abc.MetaPathFinder):
    """Makes the first `import tensorflow`, wherever it happens, a quiet one.

    The command line is parsed and checked before anything imports Keras, so `--help`
    and usage errors take a fraction of a second; TensorFlow is imported only when a
    command first needs it (through Keras, usually), and then with its native log
    lines silenced, device look-up included.
    """

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "tensorflow":
            return None
        sys.meta_path.remove(self)  # one-shot; find the real spec without us
        spec = importlib.util.find_spec(fullname)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(
                spec.loader, after=lambda tf: tf.config.list_physical_devices()
            )
        return spec


@contextlib.contextmanager
def _tensorflow_imported_quietly():
    """For the duration, the first `import tensorflow` is a quiet one."""
    finder = _QuietTensorFlowFinder()
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        if finder in sys.meta_path:
            sys.meta_path.remove(finder)


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
    try:
        args = build_parser().parse_args(argv)
        try:
            with _tensorflow_imported_quietly():
                return int(args._run(args) or 0)
        except ModuleNotFoundError as error:
            message = missing_tensorflow_message(error)
            if message is None:
                raise
            raise UsageError(message, prog=f"{PROG} {args.command}") from None
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

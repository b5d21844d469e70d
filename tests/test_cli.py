"""The console script: parse before importing a backend, Ctrl-C is one line.

Each check runs in a fresh interpreter, since this test process has Keras imported.
"""

import json
import subprocess
import sys
import textwrap

HEAVY = ("keras", "tensorflow", "jax", "torch")


def run_python(code: str, timeout: float = 120):
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_help_and_usage_errors_come_before_any_backend_is_imported():
    result = run_python(
        f"""
        import contextlib, io, json, sys
        from keras_optnotes import cli

        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out):
            try:
                cli.main(["--help"])
            except SystemExit as exit:
                help_status = exit.code
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                cli.main(["compare", "--help"])
            except SystemExit:
                pass
            usage = cli.main(["compare", "--epochs", "0"])
            unknown = cli.main(["no-such-command"])
        print(json.dumps({{
            "help": help_status, "usage": usage, "unknown": unknown,
            "out": out.getvalue(), "err": err.getvalue(),
            "imported": [m for m in {HEAVY!r} if m in sys.modules],
        }}))
        """
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["imported"] == []
    assert report["help"] == 0 and "COMMAND" in report["out"]
    assert "--epochs" in report["out"]  # the sub-command's own help
    assert report["usage"] == 2 and report["unknown"] == 2
    lines = report["err"].splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("keras-optnotes compare: error: argument --epochs")
    assert "'0'" in lines[0]
    assert (
        lines[1].startswith("keras-optnotes: error:") and "no-such-command" in lines[1]
    )


def test_ctrl_c_while_tensorflow_is_imported_is_one_line_and_status_130(tmp_path):
    # Sends SIGINT to itself from inside TensorFlow's import, where a user's Ctrl-C
    # most likely lands (the import takes seconds), then runs the real command.
    out = tmp_path / "report"
    result = run_python(
        f"""
        import importlib.abc, os, signal, sys
        signal.signal(signal.SIGINT, signal.default_int_handler)

        class CtrlC(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.startswith("tensorflow.python"):
                    sys.meta_path.remove(self)
                    os.kill(os.getpid(), signal.SIGINT)
                return None

        sys.meta_path.insert(0, CtrlC())
        from keras_optnotes import cli
        sys.exit(cli.main(["compare", "--quick", "--out", {str(out)!r}]))
        """
    )
    assert result.returncode == 130, result.stderr
    assert result.stderr == "keras-optnotes: interrupted\n"
    assert not out.exists()


def test_native_stderr_silenced_drops_writes_to_the_descriptor_and_restores_it():
    # The tutorials import TensorFlow under it too (tutorials/_common.py).
    result = run_python(
        """
        import os, sys
        from keras_optnotes.cli import native_stderr_silenced

        os.write(2, b"before\\n")
        with native_stderr_silenced():
            os.write(2, b"native\\n")  # as TensorFlow's C++ runtime writes
            print("python", file=sys.stderr)
        print("after", file=sys.stderr)
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == "before\nafter\n"

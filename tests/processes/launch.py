"""Runs the scripts of this folder in their own Python processes, bounded in time.

Every child gets the TensorFlow backend and quiet logs, and no `TF_CONFIG` unless one is
given. A child still running at its deadline is ended with SIGKILL by its PID.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parent


def environment(**extra: str) -> dict[str, str]:
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("TF_CONFIG", None)
    env.update(extra)
    return env


def command(script: str, *args: str) -> list[str]:
    return [sys.executable, str(SCRIPTS / script), *map(str, args)]


def run_script(
    script: str, *args: str, timeout: float = 300
) -> subprocess.CompletedProcess:
    """Runs `script` to its end (or kills it at `timeout` seconds) and returns the result."""
    return subprocess.run(
        command(script, *args),
        env=environment(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def describe(result: subprocess.CompletedProcess) -> str:
    """The exit status and the end of the output, for an assertion message."""
    return (
        f"exit status {result.returncode}; stderr ends with:\n{result.stderr[-3000:]}"
    )


def free_loopback_ports(count: int) -> list[int]:
    """`count` different TCP ports free on 127.0.0.1 now (the OS picks them)."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def run_together(
    commands: list[tuple[list[str], dict[str, str]]], timeout: float
) -> list[subprocess.CompletedProcess]:
    """Starts every `(command, env)` at once and waits for all of them.

    Whatever still runs `timeout` seconds after the start is sent SIGKILL by its PID;
    its result then has the negative signal number as exit status.
    """
    processes = [
        subprocess.Popen(
            cmd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for cmd, env in commands
    ]
    deadline = time.monotonic() + timeout
    results = []
    try:
        for process, (cmd, _) in zip(processes, commands):
            try:
                out, err = process.communicate(
                    timeout=max(deadline - time.monotonic(), 0.1)
                )
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                out, err = process.communicate()
            results.append(
                subprocess.CompletedProcess(cmd, process.returncode, out, err)
            )
    finally:
        for process in processes:
            if process.poll() is None:
                os.kill(process.pid, signal.SIGKILL)
                process.wait()
    return results

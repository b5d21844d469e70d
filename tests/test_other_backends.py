"""The backend-sensitive test files, run again on JAX and on PyTorch; and the slowest
TensorFlow files, in a second TensorFlow process.

Keras picks its backend once per process, so each backend gets its own pytest process.
`conftest.py` starts these processes when a whole-suite session starts, or else as soon
as the session has collected the tests below, so that they run while the TensorFlow
suite does, and puts the tests below last; each waits
for its process and, if it failed, shows the tail of its output.

To run a file on the other backends, add it to `FILES`, the one list of what runs there.

The TensorFlow suite is one process that keeps about one of the two CI cores busy, so
in a whole-suite run the files of `TENSORFLOW_SIDE_FILES` (the tutorials' and the
experiments' training runs; the TensorFlow-only files whose tests start fresh
processes: distribution, fault tolerance, TensorFlow's absence; the `compare`,
`critical-batch` and `regularize` commands) leave it for a second TensorFlow process
alongside (conftest deselects them here). The split evens out the four processes'
CPU time, so that no process runs alone at the end while a core idles: in a
whole-suite run sampled every 5 s with only the tutorials and experiments split off,
this process ran alone for its last three minutes. Run on their own, or with a
selection that leaves out the runner below, they run in this process as usual.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

HERE = Path(__file__).parent

# The files whose tests touch the backend: rules, Keras integrations, diagnostics,
# callbacks, layers, regularizers. Each runs on every backend of ENVIRONMENT but
# those NOT_YET names for it.
FILES = [
    # the rules and their Keras integrations
    "test_optimizers_reference.py",
    "test_optimizers_conformance.py",
    "test_keras_integration.py",
    "test_checkpoint_flow.py",
    "test_checkpoint_identity.py",
    "test_resume.py",
    "test_serialization.py",
    # the remedies for large batches
    "test_sam.py",
    "test_sam_efficient.py",
    "test_lars.py",
    "test_lookahead.py",
    "test_swa.py",
    "test_swa_bn_statistics.py",
    # diagnostics and callbacks
    "test_diagnostics_curvature.py",
    "test_diagnostics_landscape.py",
    "test_diagnostics_real_layers.py",
    "test_real_architectures.py",
    "test_plots_verbose.py",
    "test_callbacks_diagnostics.py",
    "test_diagnostics_command.py",
    "test_optimizer_state_monitor.py",
    "test_early_stopping.py",
    # layers and regularizers
    "test_weight_noise.py",
    "test_normalization.py",
    "test_penalty.py",
    # the experiments, and their input pipeline off TensorFlow
    "test_experiments_backends.py",
    "test_augmented_batches.py",
    "test_protocol.py",
    "test_critical_batch.py",
    "test_experiment_summary.py",
]
# TensorFlow files that a whole-suite run hands to a second TensorFlow process.
TENSORFLOW_SIDE_FILES = [
    "test_tutorials.py",
    "test_tutorials_04.py",
    "test_tutorials_05_06.py",
    "test_tutorials_07_08.py",
    "test_tutorials_09.py",
    "test_experiments_regularize.py",
    "test_experiments_compare.py",
    "test_critical_batch.py",
    "test_compare.py",
    "test_mirrored_strategy.py",
    "test_multi_worker.py",
    "test_fault_tolerance.py",
    "test_optional_tensorflow.py",
    "test_regularize.py",
]
# Files of FILES that do not pass on a backend yet: {"torch": {"test_x.py"}}.
NOT_YET: dict[str, set[str]] = {}

ENVIRONMENT = {
    "jax": {"JAX_ENABLE_X64": "1", "JAX_PLATFORMS": "cpu"},
    "torch": {"CUDA_VISIBLE_DEVICES": ""},
    "tensorflow": {},
}
TIMEOUT_S = 900
TAIL_LINES = 60


# What each background run runs.
RUNS = {"jax": FILES, "torch": FILES, "tensorflow": TENSORFLOW_SIDE_FILES}


def files(backend: str) -> list[str]:
    return [name for name in RUNS[backend] if name not in NOT_YET.get(backend, ())]


class BackendRun:
    """One pytest process over `files(backend)`, its output in a temporary file."""

    def __init__(self, backend: str):
        self.backend = backend
        self.output = tempfile.TemporaryFile(mode="w+")
        env = dict(os.environ, KERAS_BACKEND=backend, **ENVIRONMENT[backend])
        self.last_line = None  # pytest's closing line, once waited for
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
            + ["--durations=5", *files(backend)],
            cwd=HERE,
            env=env,
            stdout=self.output,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def wait(self) -> tuple[int, str, float]:
        """(exit status, output, seconds since start); kills it past TIMEOUT_S."""
        remaining = TIMEOUT_S - (time.monotonic() - self.started)
        try:
            status = self.process.wait(timeout=max(remaining, 1))
        except subprocess.TimeoutExpired:
            self.process.kill()
            status = self.process.wait()
        self.output.seek(0)
        output = self.output.read()
        lines = output.splitlines()
        self.last_line = lines[-1].strip("= ") if lines else "no output"
        return status, output, time.monotonic() - self.started


_runs: dict[str, BackendRun] = {}


def start(backend: str) -> BackendRun:
    """Starts the run of `backend` once; conftest calls it when a whole-suite session
    starts or when collection ends."""
    if backend not in _runs:
        _runs[backend] = BackendRun(backend)
    return _runs[backend]


def summary(since: float) -> list[str]:
    """A line per run waited for: its backend, when it started (seconds after
    `since`, a `time.monotonic()`) and pytest's last line (its own time)."""
    return [
        f"KERAS_BACKEND={backend}: started at {run.started - since:.0f} s; "
        f"{run.last_line}"
        for backend, run in _runs.items()
        if run.last_line is not None
    ]


def stop_all(keep: set[str] = frozenset()) -> None:
    """Kills the runs still going but those of `keep` (the session ended early: -x,
    Ctrl-C; or it does not wait for a run conftest started early)."""
    for backend, run in list(_runs.items()):
        if backend not in keep and run.process.poll() is None:
            run.process.kill()
            run.process.wait()


@pytest.mark.slow
@pytest.mark.skipif(
    os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow",
    reason="the other backends are run from the TensorFlow session",
)
@pytest.mark.parametrize("backend", sorted(RUNS))
def test_files_pass_in_their_own_process_on(backend):
    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"{backend} is not installed")
    run = start(backend)
    status, output, seconds = run.wait()
    tail = "\n".join(output.splitlines()[-TAIL_LINES:])
    # pytest's own last line ("N passed in S s") times the run itself; `seconds` is
    # how long this session had it, waiting included.
    summary = (
        f"KERAS_BACKEND={backend} ({run.last_line}; started {seconds:.0f} s ago): "
        f"{' '.join(files(backend))}"
    )
    print(f"{summary}\n{tail}")
    if status == 5:
        pytest.fail(f"{summary}: no tests collected\n{tail}")
    assert status == 0, f"{summary} failed (exit status {status}):\n{tail}"

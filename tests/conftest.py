"""Shared test set-up: quiet TensorFlow, the TensorFlow backend unless told otherwise.

The backend-sensitive test files run again on JAX and PyTorch, each in its own pytest
process (Keras picks its backend once per process). They are started here when the
session starts (a whole-suite run) or as soon as collection ends (a run that selects
the runner's tests), so that they run alongside this one, and waited for last
(`test_other_backends.py` lists the files; in a whole-suite run the slowest TensorFlow
files go to a second TensorFlow process the same way). A test that needs TensorFlow
itself (`tf.distribute`, `tf.data` internals, the XLA-fused optimizer path) is marked
`@pytest.mark.tensorflow_only` and skipped on the other backends. float64 on JAX needs
x64 mode, switched on here.
"""

import atexit
import os
import shutil
import tempfile
import time

_STARTED = time.monotonic()  # this session's start, for the background runs' summary

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
# XLA compiles every tiny model of the suite once or twice and runs it a few steps:
# its LLVM optimizations cost more CPU than they save (on JAX, about a third of the
# suite's CPU time; on TensorFlow's XLA-compiled steps, about a tenth). The tests
# compare against references, not against optimized code, so the suite compiles
# without them; the processes it starts inherit the setting. Set XLA_FLAGS to test
# with XLA's defaults.
os.environ.setdefault(
    "XLA_FLAGS",
    "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true",
)
if os.environ["KERAS_BACKEND"] == "jax":
    os.environ.setdefault("JAX_ENABLE_X64", "1")
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")
# PyTorch's intra-op threads spin while they wait: on the suite's tiny tensors, with
# the other backends' processes beside it on the CI's two cores, they cost CPU time and
# gain none (the PyTorch process: about 14 % less CPU time with one thread).
if os.environ["KERAS_BACKEND"] == "torch":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
# The suite builds the same tiny models again and again (per rule, per test, in the
# fresh processes it starts), and JAX compiles each anew: its persistent compilation
# cache, keyed by the compiled program, its options and JAX's version, serves the
# repeats from one temporary folder per whole-suite run, shared with every process
# the run starts (on JAX, about a quarter of the suite's CPU time). The session that
# made the folder removes it when it exits; set JAX_COMPILATION_CACHE_DIR to keep one.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    _cache = tempfile.mkdtemp(prefix="keras-optnotes-jax-cache-")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _cache
    atexit.register(shutil.rmtree, _cache, ignore_errors=True)
# Every compile, however short, and every entry, however small.
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "-1")

import importlib.util  # noqa: E402

import pytest  # noqa: E402

BACKEND = os.environ["KERAS_BACKEND"]
OTHER_BACKENDS_RUNNER = "test_other_backends.py"
_runner = None  # test_other_backends, once it has started processes


def _runs_in_background(item) -> str | None:
    """The backend whose background run `item` waits for, or None."""
    if item.path.name != OTHER_BACKENDS_RUNNER:
        return None
    return item.callspec.params["backend"]


@pytest.hookimpl(trylast=True)  # after -k / -m have deselected what they do
def pytest_collection_modifyitems(config, items):
    skip = pytest.mark.skip(
        reason=f"needs the TensorFlow backend (running on {BACKEND})"
    )
    if BACKEND != "tensorflow":
        for item in items:
            if "tensorflow_only" in item.keywords:
                item.add_marker(skip)
    # The second TensorFlow process runs its files, when this session waits for it.
    side = [item for item in items if _runs_in_background(item) == "tensorflow"]
    if BACKEND == "tensorflow" and side:
        moved = set(side[0].module.files("tensorflow"))
        deselected = [item for item in items if item.path.name in moved]
        if deselected:
            config.hook.pytest_deselected(items=deselected)
            items[:] = [item for item in items if item.path.name not in moved]
    # The runs on the other backends go on in the background; wait for them last.
    items.sort(key=lambda item: item.path.name == OTHER_BACKENDS_RUNNER)


def _whole_suite(config) -> bool:
    """Whether this session runs the configured test paths with nothing selected
    away, and so will wait for every background run."""
    option = config.option
    return (
        BACKEND == "tensorflow"
        and config.args_source is pytest.Config.ArgsSource.TESTPATHS
        and not option.collectonly
        and not option.keyword
        and not option.markexpr
        and not option.deselect
        and not option.ignore
        and not option.ignore_glob
        and not any(
            getattr(option, name, False) for name in ("lf", "failedfirst", "stepwise")
        )
    )


def pytest_configure(config):
    """No garbage collection when the session ends: pytest runs one, to report the
    exceptions raised in `__del__` of objects that only a collection frees. After
    the second TensorFlow process' files (distribution, experiments, commands) that
    collection waited idle for 31 s (0.7 s of CPU) in the destructor of some
    TensorFlow object, while the interpreter's own exit takes 0.1 s; in CI that
    process is often the last. Unraisable exceptions raised during the tests are
    still reported with their test."""
    try:  # the number of collections (pytest >= 8.4 keeps it in the config's stash)
        from _pytest.unraisableexception import gc_collect_iterations_key
    except ImportError:
        return
    config.stash[gc_collect_iterations_key] = 0


def pytest_sessionstart(session):
    """In a whole-suite run, starts the background runs at once: collecting the
    suite takes about 20 s of one core, which they use."""
    if not _whole_suite(session.config):
        return
    global _runner
    import test_other_backends as _runner

    for backend in _runner.RUNS:
        if importlib.util.find_spec(backend) is not None:
            _runner.start(backend)


def pytest_collection_finish(session):
    """Starts the other backends' pytest processes, if this session waits for them
    (and stops any started early that it does not wait for)."""
    global _runner
    if BACKEND != "tensorflow" or session.config.option.collectonly:
        return
    waited = set()
    for item in session.items:
        backend = _runs_in_background(item)
        if backend is not None:
            waited.add(backend)
            if importlib.util.find_spec(backend) is not None:
                _runner = item.module
                _runner.start(backend)
    if _runner is not None:
        _runner.stop_all(keep=waited)


@pytest.fixture(scope="session")
def resume_runs(tmp_path_factory):
    """Both checkpoint flows of `processes/resume.py` on this backend, run once for
    test_resume.py (the `.keras` file) and test_checkpoint_flow.py (`load_weights`)."""
    from processes import resume

    return resume.run(tmp_path_factory.mktemp("resume"), BACKEND)


def pytest_sessionfinish(session):
    if _runner is not None:
        _runner.stop_all()


def pytest_terminal_summary(terminalreporter):
    """When each background run started and how long it took: whether the processes
    end together on the CI's two cores."""
    lines = _runner.summary(_STARTED) if _runner is not None else []
    if lines:
        terminalreporter.section("background pytest processes")
        for line in lines:
            terminalreporter.write_line(line)

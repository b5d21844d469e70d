"""TensorFlow is optional: without it, on JAX, the package imports and runs, and what
truly needs TensorFlow says so in one line, at the call.

TensorFlow's absence is simulated, not uninstalled: each check runs in a fresh
process whose `sys.meta_path` starts with a finder that refuses `tensorflow` and its
submodules with the `ModuleNotFoundError` a missing package raises. (CI's floor job,
`tests/floor_smoke.py`, runs in an environment where TensorFlow is really absent.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from test_augmented_batches import check_cutmix, check_mixup

# REFUSED gets the name of the module whose `import` asked for TensorFlow, once per
# request (TensorFlow never gets into sys.modules here, so that is what can be checked).
WITHOUT_TENSORFLOW = """
import importlib.abc, sys

REFUSED = []

class _NoTensorFlow(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname.split(".")[0] == "tensorflow":
            frame = sys._getframe(1)
            while frame.f_globals.get("__name__", "").split(".")[0] == "importlib":
                frame = frame.f_back
            REFUSED.append(frame.f_globals.get("__name__"))
            raise ModuleNotFoundError(f"No module named {fullname!r}", name=fullname)
        return None

sys.meta_path.insert(0, _NoTensorFlow())
"""
INSTALL = 'pip install "keras-optnotes[tensorflow]"'


def run_without_tensorflow(code: str, backend: str = "jax", timeout: int = 600):
    env = dict(
        os.environ,
        KERAS_BACKEND=backend,
        JAX_PLATFORMS="cpu",
        TF_CPP_MIN_LOG_LEVEL="3",
        PYTHONPATH=os.pathsep.join(filter(None, [os.path.dirname(__file__)])),
    )
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_TENSORFLOW + textwrap.dedent(code)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# One process for the library checks: imports, the one-line errors, the regularize
# pipeline's batches and both experiments, tiny. Its findings come back as JSON on
# the last line of stdout, the batches in an .npz file.
LIBRARY_SCRIPT = """
import importlib, json, pkgutil, sys
import numpy as np

import keras_optnotes
from keras_optnotes._tensorflow import TensorFlowNotInstalledError, import_tensorflow

found = {"failed_imports": {}, "errors": {}}
# Every module but the TensorFlow backend's own (imported on that backend only).
tensorflow_backend = {
    "keras_optnotes.training._sam_tensorflow",
    "keras_optnotes.diagnostics._backend.tensorflow",
}
for info in pkgutil.walk_packages(keras_optnotes.__path__, "keras_optnotes."):
    if info.name in tensorflow_backend:
        continue
    try:
        importlib.import_module(info.name)
    except Exception as error:
        found["failed_imports"][info.name] = repr(error)
found["refused_while_importing"] = list(REFUSED)

from keras_optnotes import data

def error_of(call):
    try:
        call()
    except Exception as error:
        return [type(error).__name__, str(error), isinstance(error, ImportError)]
    return None

images = np.zeros((4, 8, 8, 1), "float32")
found["errors"]["augment"] = error_of(lambda: data.augment(images, rotate=0.1))
found["errors"]["import_tensorflow"] = error_of(lambda: import_tensorflow("Some thing"))
found["refused_for_the_errors"] = REFUSED[len(found["refused_while_importing"]):]
del REFUSED[:]

import keras
from keras_optnotes.experiments import regularize, run_ablation, run_comparison

rng = np.random.default_rng(0)
x = rng.uniform(0.1, 1.0, size=(16, 8, 8, 1)).astype("float32")
arrays = {"x": x}
for technique in ("mixup", "cutmix"):
    batches = regularize._training_data(x, np.arange(16), technique, 16, 4, seed=0)
    found[technique + "_is_py_dataset"] = isinstance(batches, keras.utils.PyDataset)
    parts = [batches[i] for i in range(len(batches))]
    arrays[technique + "_images"] = np.concatenate([p[0] for p in parts])
    arrays[technique + "_labels"] = np.concatenate([p[1] for p in parts])
np.savez(OUT, **arrays)

split = data.load("digits", validation_fraction=0.5)
ablation = run_ablation(split, ["cutmix"], epochs=1, train_size=16,
                        validation_curves=True)
found["ablation"] = [run.technique for run in ablation.runs]
found["ablation_finite"] = all(
    np.isfinite([run.train_loss, run.val_loss]).all() for run in ablation.runs)
comparison = run_comparison(data.load("digits", max_samples=64), {"Adam": 0.01},
                            epochs=1)
found["comparison"] = [run.optimizer for run in comparison.runs]
# Keras itself probes for TensorFlow in `fit` (keras.src.utils.module_utils).
found["refused_for_the_package"] = [
    name for name in REFUSED if name.split(".")[0] == "keras_optnotes"
]
print(json.dumps(found))
"""


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    out = tmp_path_factory.mktemp("no_tensorflow") / "batches.npz"
    result = run_without_tensorflow(f"OUT = {str(out)!r}\n" + LIBRARY_SCRIPT)
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    return found, dict(np.load(out))


@pytest.mark.slow
def test_every_module_imports_without_tensorflow(library):
    found, _ = library
    assert found["failed_imports"] == {}
    assert found["refused_while_importing"] == []  # no module asked for TensorFlow


@pytest.mark.slow
def test_tensorflow_only_paths_raise_one_line_at_the_call(library):
    found, _ = library
    assert found["errors"]["augment"] == [
        "TensorFlowNotInstalledError",
        "keras_optnotes.data.augment (a tf.data pipeline) needs TensorFlow: " + INSTALL,
        True,  # an ImportError, as `except ImportError` expects
    ]
    assert found["errors"]["import_tensorflow"] == [
        "TensorFlowNotInstalledError",
        "Some thing needs TensorFlow: " + INSTALL,
        True,
    ]
    # Both asked through the one import; this also shows that REFUSED records.
    assert found["refused_for_the_errors"] == ["keras_optnotes._tensorflow"] * 2


@pytest.mark.slow
def test_regularize_batches_without_tensorflow_mix_as_the_equations_say(library):
    found, arrays = library
    assert found["mixup_is_py_dataset"] and found["cutmix_is_py_dataset"]
    x = arrays["x"]
    check_mixup(x, arrays["mixup_images"], arrays["mixup_labels"])
    assert check_cutmix(x, arrays["cutmix_images"], arrays["cutmix_labels"]) > 0


@pytest.mark.slow
def test_both_experiments_run_without_tensorflow(library):
    found, _ = library
    assert found["ablation"] == ["cutmix"]
    assert found["ablation_finite"] is True
    assert found["comparison"] == ["Adam"]
    assert found["refused_for_the_package"] == []


CLI = """
import sys
from keras_optnotes.cli import main
sys.exit(main(sys.argv[1:]))
"""


def run_cli(*argv: str, backend: str):
    code = WITHOUT_TENSORFLOW + CLI
    env = dict(os.environ, KERAS_BACKEND=backend, JAX_PLATFORMS="cpu")
    return subprocess.run(
        [sys.executable, "-c", code, *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_cli_on_the_tensorflow_backend_without_tensorflow_exits_2_with_one_line():
    result = run_cli("compare", "--quick", "--epochs", "1", backend="tensorflow")
    assert result.returncode == 2
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith("keras-optnotes compare: error: Keras' backend 'tensorflow'")
    assert line.endswith(
        f"needs TensorFlow: {INSTALL}, or choose another backend, "
        "e.g. KERAS_BACKEND=jax"
    )


def test_cli_help_and_usage_errors_need_no_tensorflow():
    result = run_cli("--help", backend="tensorflow")
    assert result.returncode == 0 and "compare" in result.stdout
    result = run_cli("compare", "--epochs", "0", backend="tensorflow")
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1
    assert "--epochs" in result.stderr

"""Both experiments, tiny, on the backend of this process: one rule, and the two
techniques with random state in the model (dropout) and in the input pipeline
(MixUp: tf.data on TensorFlow, a keras.utils.PyDataset elsewhere), one epoch each.

The file is in `test_other_backends.FILES`, so it runs on TensorFlow here and on JAX
and PyTorch in their own pytest processes.
"""

import math
import os
import subprocess
import sys

import keras
import pytest

from keras_optnotes import data
from keras_optnotes.experiments import run_ablation, run_comparison


@pytest.fixture(scope="module")
def experiments():
    split = data.load("digits", seed=0, max_samples=64)
    comparison = run_comparison(split, {"Adam": 0.01}, epochs=1)
    split = data.load("digits", validation_fraction=0.5)
    ablation = run_ablation(
        split, ["dropout", "mixup"], epochs=1, train_size=32, validation_curves=True
    )
    return comparison, ablation


def test_both_experiments_run_on_this_backend(experiments):
    comparison, ablation = experiments
    assert [run.optimizer for run in comparison.runs] == ["Adam"]
    assert [run.technique for run in ablation.runs] == ["dropout", "mixup"]
    for run in comparison.runs:
        for value in (*run.history["loss"], *run.history["val_loss"]):
            assert math.isfinite(value) and abs(value) < 1e3
        # Ten classes, small initial weights: the first epoch's loss is near ln 10.
        assert abs(run.history["loss"][0] - math.log(10)) < 0.3
    for run in ablation.runs:
        values = (run.train_loss, run.val_loss, run.val_accuracy)
        assert all(math.isfinite(v) for v in values + tuple(run.history["val_loss"]))
        # The last epoch's recorded validation accuracy is the final score.
        assert run.history["val_accuracy"][-1] == pytest.approx(
            run.val_accuracy, abs=1e-6
        )


CRASH_SCRIPT = """
import numpy as np

from keras_optnotes._tensorflow import import_tensorflow
from keras_optnotes.data import augment

# The package's one way to import TensorFlow, before anything has imported Keras
# (and so PyTorch and triton); then augment's tf.data pipeline, which needs it.
tf = import_tensorflow("this test")
images = np.zeros((4, 8, 8, 1), "float32")
dataset = tf.data.Dataset.from_tensor_slices((images, np.arange(4))).batch(4)
list(augment(dataset, mixup_alpha=0.2, num_classes=4))
import keras
assert keras.backend.backend() == "torch"
import torch._dynamo  # what torch.compile (jit_compile=True) imports: triton
print("alive")
"""


@pytest.mark.skipif(
    keras.backend.backend() != "torch", reason="the import order of PyTorch's triton"
)
def test_tensorflow_imported_by_the_package_leaves_torch_compile_working():
    # triton imported after TensorFlow is a segmentation fault; the package imports
    # TensorFlow after Keras, whose PyTorch backend imports triton
    # (keras_optnotes/_tensorflow.py). A fresh process: this one has Keras already.
    pytest.importorskip("triton")
    result = subprocess.run(
        [sys.executable, "-c", CRASH_SCRIPT],
        env=dict(os.environ, KERAS_BACKEND="torch"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "alive"

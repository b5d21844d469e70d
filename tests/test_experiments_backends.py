"""Both experiments, tiny, on JAX and PyTorch (each in its own process: Keras picks its
backend once per process): one rule, and the two techniques with random state in the
model (dropout) and in the tf.data pipeline (MixUp), one epoch each."""

import json
import os
import subprocess
import sys

import pytest

# Keras (and so the backend) is imported before `keras_optnotes.data`, which imports
# TensorFlow for its tf.data augmentation: importing PyTorch after TensorFlow crashes
# the interpreter with this TensorFlow and PyTorch build.
SCRIPT = """
import json, math
import keras
from keras_optnotes import data
from keras_optnotes.experiments import run_ablation, run_comparison

split = data.load("digits", seed=0, max_samples=64)
comparison = run_comparison(split, {"Adam": 0.01}, epochs=1)
split = data.load("digits", validation_fraction=0.5)
ablation = run_ablation(
    split, ["dropout", "mixup"], epochs=1, train_size=32,
    validation_curves=True,
)
print(json.dumps({
    "backend": keras.backend.backend(),
    "compare": [[r.optimizer, *r.history["loss"], *r.history["val_loss"]]
                for r in comparison.runs],
    "ablation": [[r.technique, r.train_loss, r.val_loss, r.val_accuracy,
                  *r.history["val_accuracy"]] for r in ablation.runs],
}))
"""


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_both_experiments_run_on(backend):
    pytest.importorskip(backend)
    env = dict(os.environ, KERAS_BACKEND=backend, JAX_PLATFORMS="cpu")
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["backend"] == backend
    assert [row[0] for row in report["compare"]] == ["Adam"]
    assert [row[0] for row in report["ablation"]] == ["dropout", "mixup"]
    for row in report["compare"] + report["ablation"]:
        assert all(isinstance(v, float) and v == v and abs(v) < 1e3 for v in row[1:])
    for _, loss, *_ in report["compare"]:
        assert abs(loss - 2.30) < 0.3  # ten classes, small initial weights: ≈ ln 10
    for row in report["ablation"]:
        assert row[-1] == pytest.approx(row[3], abs=1e-6)  # last epoch = final score

"""The floor job's smoke run: the package at the oldest Keras it declares, without
TensorFlow, on JAX (or another backend given by KERAS_BACKEND).

`.ci/run` runs it on JAX in a virtual environment of its own with `keras==<floor>`,
jax and the data, plot and diagnostics extras, after checking that TensorFlow is not
installed; then `keras-optnotes compare --quick` and a short `keras-optnotes
sharpness --quick`. With torch installed it runs on PyTorch as well
(`KERAS_BACKEND=torch`). Not a pytest file (pytest collects test_*.py): run it as
`python tests/floor_smoke.py`. It exits non-zero at the first failure.

What it shows: every module imports; each update rule, Lookahead around LARS, SAM
(plain, adaptive, split into two batches) and SWA train with `fit`; the Hessian's
largest eigenvalue and its trace equal their closed forms on a linear least-squares
model; and no module of the package asks for TensorFlow (it is not installed, so
the asking is what can be checked; Keras' own probes for it are left aside).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import os
import pkgutil
import sys
import time

import numpy as np

# The backend-specific modules, each imported only on its own backend (and needing
# that backend's library).
BACKEND_MODULES = {
    backend: {
        f"keras_optnotes.training._sam_{backend}",
        f"keras_optnotes.diagnostics._backend.{backend}",
    }
    for backend in ("tensorflow", "jax", "torch")
}
SAMPLES, FEATURES = 64, 4


def check_imports() -> int:
    import keras

    import keras_optnotes

    other_backends = set().union(
        *(m for b, m in BACKEND_MODULES.items() if b != keras.backend.backend())
    )
    names = [
        info.name
        for info in pkgutil.walk_packages(keras_optnotes.__path__, "keras_optnotes.")
        if info.name not in other_backends
    ]
    for name in names:
        importlib.import_module(name)
    return len(names)


def least_squares():
    """x with orthogonal columns of norms d_j, y = x w* + noise. For the model
    ŷ = x w and the mean squared error, H = (2/n) xᵀx = (2/n) diag(d²): λ_max =
    (2/n) max d², trace = (2/n) Σ d², and Hutchinson's estimate is exact for a
    diagonal H (every Rademacher draw gives vᵀHv = trace)."""
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(SAMPLES, FEATURES)))
    norms = np.array([4.0, 3.0, 2.0, 1.0])
    x = (q * norms).astype("float32")
    y = x @ rng.normal(size=(FEATURES, 1)) + 0.1 * rng.normal(size=(SAMPLES, 1))
    return x, y.astype("float32"), 2.0 / SAMPLES * norms**2


def linear_model():
    import keras

    return keras.Sequential(
        [
            keras.Input((FEATURES,)),
            keras.layers.Dense(1, use_bias=False, kernel_initializer="zeros"),
        ]
    )


def train(model, optimizer, x, y, epochs=3, **fit_kwargs) -> list[float]:
    model.compile(optimizer=optimizer, loss="mse")
    history = model.fit(x, y, batch_size=16, epochs=epochs, verbose=0, **fit_kwargs)
    losses = history.history["loss"]
    assert np.all(np.isfinite(losses)), losses
    # Zero weights, convex loss, small steps: every method lowers the loss.
    assert losses[-1] < losses[0], (optimizer, losses)
    return losses


def check_rules(x, y) -> list[str]:
    from keras_optnotes import optimizers

    rules = list(optimizers.list_rules())
    for name in rules:
        train(linear_model(), optimizers.get(name), x, y)
    train(linear_model(), optimizers.Lookahead(optimizers.LARS(0.1)), x, y)
    return [*rules, "Lookahead(LARS)"]


def check_sam_and_swa(x, y) -> list[str]:
    from keras_optnotes import callbacks, optimizers
    from keras_optnotes.training import SharpnessAwareMinimization

    variants = {
        "SAM": {},
        "ASAM": {"adaptive": True, "rho": 0.5},
        "SAM num_batch_splits=2": {"num_batch_splits": 2},
    }
    for kwargs in variants.values():
        sam = SharpnessAwareMinimization(linear_model(), **kwargs)
        train(sam, optimizers.Adam(0.05), x, y)
    swa = callbacks.StochasticWeightAveraging(start_epoch=1)
    train(linear_model(), optimizers.Momentum(0.01), x, y, callbacks=[swa])
    return [*variants, "SWA"]


def check_hessian(x, y) -> tuple[float, float]:
    from keras_optnotes import diagnostics

    x, y, curvatures = least_squares()
    model = linear_model()
    model.compile(loss="mse")
    top = diagnostics.hessian_top_eigenvalues(model, (x, y), verbose=0)
    trace = diagnostics.hessian_trace(model, (x, y), samples=10, verbose=0)
    np.testing.assert_allclose(top.eigenvalues[0], curvatures.max(), rtol=1e-3)
    np.testing.assert_allclose(trace.trace, curvatures.sum(), rtol=1e-4)
    return float(top.eigenvalues[0]), float(trace.trace)


class TensorFlowRequests(importlib.abc.MetaPathFinder):
    """Records the name of each module whose `import` asks for TensorFlow, and lets
    the import go on (and fail, TensorFlow being absent)."""

    def __init__(self):
        self.askers: list[str] = []

    def find_spec(self, fullname, path=None, target=None):
        if fullname.split(".")[0] == "tensorflow":
            frame = sys._getframe(1)
            while frame.f_globals.get("__name__", "").split(".")[0] == "importlib":
                frame = frame.f_back
            self.askers.append(frame.f_globals.get("__name__"))
        return None


def main() -> int:
    start = time.perf_counter()
    assert importlib.util.find_spec("tensorflow") is None, "TensorFlow is installed"
    requests = TensorFlowRequests()
    sys.meta_path.insert(0, requests)
    import keras

    modules = check_imports()
    x, y, _ = least_squares()
    trained = check_rules(x, y) + check_sam_and_swa(x, y)
    lambda_max, trace = check_hessian(x, y)
    asked = [m for m in requests.askers if m.split(".")[0] == "keras_optnotes"]
    assert not asked, f"asked for TensorFlow: {asked}"
    print(
        f"floor smoke: Keras {keras.__version__} on {keras.backend.backend()}, "
        f"no TensorFlow: {modules} modules imported; trained {', '.join(trained)}; "
        f"λ_max {lambda_max:.6g}, trace {trace:.6g} (closed forms); "
        f"{time.perf_counter() - start:.0f} s"
    )
    return 0


if __name__ == "__main__":
    os.environ.setdefault("KERAS_BACKEND", "jax")
    sys.exit(main())

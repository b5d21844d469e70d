"""The diagnostic callbacks inside `model.fit`, against quantities known in closed form
or computed by an independent float64 NumPy re-run of the update rule, on every
backend."""

import math

import keras
import numpy as np
import pytest

from keras_optnotes import optimizers
from keras_optnotes.callbacks import (
    GradientNoiseScale,
    OptimizerStateMonitor,
    SharpnessMonitor,
)
from keras_optnotes.callbacks.noise_scale import noise_scale_estimates


def linear_model(p, use_bias=True):
    return keras.Sequential(
        [keras.Input((p,)), keras.layers.Dense(1, use_bias=use_bias)]
    )


def negative_output(y_true, y_pred):
    """A loss linear in the weights: the per-example gradient is −x, whatever w is."""
    return -y_pred[:, 0]


def ema_effective_count(measurements, ema):
    """(Σw)²/Σw² of the bias-corrected EMA's weights w_i ∝ ema^(m−i): the number of
    independent measurements its average is worth."""
    weights = ema ** np.arange(measurements)
    return weights.sum() ** 2 / (weights**2).sum()


def test_gradient_noise_scale_matches_known_covariance():
    # Per-example gradient −x_i: G = −mean(x), Σ = Cov(x), so B_simple = tr Σ / |μ|².
    rng = np.random.default_rng(0)
    n, d = 20000, 20
    x = (np.sqrt(0.5 / d) + rng.normal(size=(n, d))).astype("float32")
    y = np.zeros((n, 1), "float32")
    x64 = x.astype(np.float64)
    mean = x64.mean(0)
    trace = np.trace(np.cov(x64.T, ddof=0))  # ≈ 20
    squared_norm = mean @ mean  # ≈ 0.5
    small, big, steps, ema = 32, 256, 200, 0.99
    model = linear_model(d, use_bias=False)
    model.compile(optimizer=keras.optimizers.SGD(1e-4), loss=negative_output)
    noise = GradientNoiseScale(
        (x, y), small_batch_size=small, big_batch_size=big, every_n_steps=1, ema=ema
    )
    history = model.fit(x, y, batch_size=100, epochs=1, verbose=0, callbacks=[noise])
    assert len(history.history["gradient_noise_scale"]) == 1
    assert len(noise.measurements) == steps
    # Spread of one measurement for Gaussian gradients with Σ ≈ σ²I, k = B_big/B_small:
    # tr Σ estimate ~ σ² χ²_{d(k−1)}/(k−1), relative variance 2/(d(k−1)); |G|²
    # estimate variance 4σ²|G|²/B_big + 2dσ⁴/B_big² · k/(k−1). The EMA averages
    # `ema_effective_count` of them; allow four standard deviations.
    k, sigma2 = big // small, trace / d
    count = ema_effective_count(steps, ema)
    trace_rel = np.sqrt(2.0 / (d * (k - 1)) / count)
    norm_rel = (
        np.sqrt(
            (4 * sigma2 * squared_norm / big + 2 * d * sigma2**2 / big**2 * k / (k - 1))
            / count
        )
        / squared_norm
    )
    assert trace_rel < 0.01 and norm_rel < 0.02  # tight enough to see a 1/k error
    logged = {key: values[0] for key, values in history.history.items()}
    assert logged["gradient_noise_trace"] == pytest.approx(trace, rel=4 * trace_rel)
    assert logged["gradient_squared_norm"] == pytest.approx(
        squared_norm, rel=4 * norm_rel
    )
    assert logged["gradient_noise_scale"] == pytest.approx(
        trace / squared_norm, rel=4 * np.hypot(trace_rel, norm_rel)
    )


def test_noise_scale_estimates_on_hand_computed_gradients():
    # B_small = 1, B_big = 2, small-batch gradients (1, 0) and (0, 1):
    # |G_small|² = 1, |G_big|² = |(½, ½)|² = ½;
    # |G|² = (2·½ − 1·1)/(2 − 1) = 0, tr Σ = (1 − ½)/(1/1 − 1/2) = 1.
    assert noise_scale_estimates([[1.0, 0.0], [0.0, 1.0]], 1, 2) == (0.0, 1.0)
    # B_small = 2, B_big = 6, gradients (3, 0), (1, 2), (−1, 1):
    # |G_small|² = (9 + 5 + 2)/3 = 16/3, mean (1, 1), |G_big|² = 2;
    # |G|² = (6·2 − 2·16/3)/4 = 1/3, tr Σ = (16/3 − 2)/(1/2 − 1/6) = 10.
    g2, trace = noise_scale_estimates([[3.0, 0.0], [1.0, 2.0], [-1.0, 1.0]], 2, 6)
    assert g2 == pytest.approx(1.0 / 3.0, rel=1e-15)
    assert trace == pytest.approx(10.0, rel=1e-15)


def test_measure_uses_the_small_batches_of_one_big_batch():
    # The data are exactly one big batch, so `measure` sees all of it, in order; the
    # per-example gradient of `negative_output` is −x_i, whatever the weights.
    rng = np.random.default_rng(6)
    x = rng.normal(size=(12, 3))
    y = np.zeros((12, 1))
    model = keras.Sequential(
        [
            keras.Input((3,), dtype="float64"),
            keras.layers.EinsumDense("ab,bc->ac", output_shape=1, dtype="float64"),
        ]
    )
    model.compile(optimizer="sgd", loss=negative_output)
    noise = GradientNoiseScale((x, y), small_batch_size=4, big_batch_size=12, ema=0.9)
    noise.set_model(model)
    gradients = [-x[i : i + 4].mean(0) for i in range(0, 12, 4)]
    small_sq = np.mean([g @ g for g in gradients])
    big = np.mean(gradients, axis=0)
    g2 = (12 * (big @ big) - 4 * small_sq) / (12 - 4)
    trace = (small_sq - big @ big) / (1 / 4 - 1 / 12)
    record = noise.measure()  # the first: the bias correction undoes the EMA
    assert record["gradient_squared_norm"] == pytest.approx(g2, rel=1e-12)
    assert record["gradient_noise_trace"] == pytest.approx(trace, rel=1e-12)
    assert record["gradient_noise_scale"] == pytest.approx(trace / g2, rel=1e-12)
    second = noise.measure()  # the same big batch again: the EMA of equal values
    assert second["gradient_noise_trace"] == pytest.approx(trace, rel=1e-12)


def test_gradient_noise_scale_every_n_steps_and_bad_input():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(64, 3)).astype("float32")
    y = rng.normal(size=(64, 1)).astype("float32")
    model = linear_model(3)
    model.compile(optimizer="sgd", loss="mse")
    noise = GradientNoiseScale((x, y), small_batch_size=4, every_n_steps=3)
    history = model.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[noise])
    # 8 steps per epoch, measured at steps 0, 3, 6, 9, 12, 15.
    assert len(noise.measurements) == 6
    assert len(history.history["gradient_noise_scale"]) == 2
    assert all(math.isfinite(v) for v in history.history["gradient_squared_norm"])
    with pytest.raises(ValueError, match="`big_batch_size`"):
        GradientNoiseScale((x, y), small_batch_size=4, big_batch_size=10)
    with pytest.raises(ValueError, match="`small_batch_size`"):
        GradientNoiseScale((x, y), small_batch_size=0)
    with pytest.raises(ValueError, match="`ema`"):
        GradientNoiseScale((x, y), small_batch_size=4, ema=1.0)
    with pytest.raises(ValueError, match="fewer than `big_batch_size`"):
        GradientNoiseScale((x[:10], y[:10]), small_batch_size=4)


def test_sharpness_monitor_logs_lambda_max_of_least_squares():
    # The Hessian of least squares does not depend on the weights: 2/N X̃ᵀX̃.
    rng = np.random.default_rng(2)
    x = (rng.normal(size=(128, 4)) * np.array([3.0, 1.0, 0.5, 0.2])).astype("float32")
    y = rng.normal(size=(128, 1)).astype("float32")
    design = np.hstack([x.astype(np.float64), np.ones((128, 1))])
    eigenvalues = np.linalg.eigvalsh(2.0 / 128 * design.T @ design)
    model = linear_model(4)
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
    monitor = SharpnessMonitor(
        (x, y), every_n_epochs=2, trace_samples=200, max_iterations=200, tolerance=1e-7
    )
    history = model.fit(x, y, batch_size=32, epochs=3, verbose=0, callbacks=[monitor])
    top = history.history["hessian_top_eigenvalue"]
    assert len(top) == 3 and math.isnan(top[1])
    np.testing.assert_allclose([top[0], top[2]], eigenvalues.max(), rtol=1e-4)
    trace = history.history["hessian_trace"]
    standard_error = monitor.results[1][1].standard_error
    assert abs(trace[0] - eigenvalues.sum()) <= 3 * standard_error
    assert monitor._operator.traces <= 3  # one trace per function, for the whole run


def run_rule_in_numpy(rule, kwargs, x, y, w, b, epochs):
    """Full-batch steps of the notes' rule in float64; returns η_eff after each."""
    lr, eps = kwargs["learning_rate"], kwargs["epsilon"]
    theta = np.concatenate([w.ravel(), b.ravel()]).astype(np.float64)
    design = np.hstack([x.astype(np.float64), np.ones((len(x), 1))])
    state = {
        "G": np.zeros_like(theta),
        "m": np.zeros_like(theta),
        "v": np.zeros_like(theta),
    }
    out = []
    for t in range(1, epochs + 1):
        g = 2.0 / len(x) * design.T @ (design @ theta - y.ravel())
        if rule == "Adagrad":
            state["G"] += g**2
            effective = lr / np.sqrt(state["G"] + eps)
            theta -= effective * g
        else:  # Adam
            b1, b2 = kwargs["beta_1"], kwargs["beta_2"]
            state["m"] = b1 * state["m"] + (1 - b1) * g
            state["v"] = b2 * state["v"] + (1 - b2) * g**2
            m_hat = state["m"] / (1 - b1**t)
            if kwargs["epsilon_inside_sqrt"]:
                effective = lr * np.sqrt(1 - b2**t) / np.sqrt(state["v"] + eps)
            else:
                effective = lr / (np.sqrt(state["v"] / (1 - b2**t)) + eps)
            theta -= effective * m_hat
        out.append(effective)
    return out


@pytest.mark.parametrize(
    "rule, kwargs",
    [
        ("Adagrad", {"learning_rate": 0.1, "epsilon": 1e-8}),
        (
            "Adam",
            {
                "learning_rate": 0.05,
                "epsilon": 1e-8,
                "beta_1": 0.9,
                "beta_2": 0.999,
                "epsilon_inside_sqrt": True,
            },
        ),
        (
            "Adam",
            {
                "learning_rate": 0.05,
                "epsilon": 1e-3,
                "beta_1": 0.9,
                "beta_2": 0.99,
                "epsilon_inside_sqrt": False,
            },
        ),
    ],
)
def test_optimizer_state_monitor_matches_numpy_rerun(rule, kwargs):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(40, 5)).astype("float32") * np.float32([4, 2, 1, 0.5, 0.1])
    y = rng.normal(size=(40, 1)).astype("float32")
    model = linear_model(5)
    w, b = (v.copy() for v in model.get_weights())
    model.compile(optimizer=optimizers.get(rule, **kwargs), loss="mse")
    epochs = 6
    history = model.fit(
        x,
        y,
        batch_size=40,
        epochs=epochs,
        shuffle=False,
        verbose=0,
        callbacks=[OptimizerStateMonitor()],
    )
    reference = run_rule_in_numpy(rule, kwargs, x, y, w, b, epochs)
    for name, q in (("p5", 5), ("median", 50), ("p95", 95)):
        expected = [np.percentile(e, q) for e in reference]
        np.testing.assert_allclose(
            history.history[f"effective_learning_rate_{name}"], expected, rtol=2e-3
        )
    if rule == "Adagrad":  # the notes: Adagrad's learning rate only ever shrinks
        assert np.all(np.diff(history.history["effective_learning_rate_median"]) < 0)


def test_optimizer_state_monitor_rejects_a_foreign_optimizer():
    model = linear_model(2)
    model.compile(optimizer=keras.optimizers.Adam(), loss="mse")
    x = np.zeros((4, 2), "float32")
    with pytest.raises(ValueError, match="keras_optnotes.optimizers"):
        model.fit(x, x[:, :1], verbose=0, callbacks=[OptimizerStateMonitor()])


# --- regression tests (issue 12) -----------------------------------------------------


def test_sharpness_monitor_waits_for_fit_to_build_the_model():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(32, 3)).astype("float32")
    y = rng.normal(size=(32, 1)).astype("float32")
    model = keras.Sequential([keras.layers.Dense(2), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
    monitor = SharpnessMonitor((x, y), max_iterations=5)
    history = model.fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=[monitor])
    assert all(math.isfinite(v) for v in history.history["hessian_top_eigenvalue"])


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": 2.5}, "batch_size"),
        ({"seed": -1}, "seed"),
        ({"training": "no"}, "training"),
        ({"jit_compile": "yes"}, "jit_compile"),
        ({"every_n_epochs": 0}, "every_n_epochs"),
    ],
)
def test_sharpness_monitor_checks_its_arguments_at_construction(kwargs, name):
    data = (np.zeros((4, 2), "float32"), np.zeros((4, 1), "float32"))
    with pytest.raises(ValueError, match=f"`{name}`"):
        SharpnessMonitor(data, **kwargs)


def test_sharpness_monitor_checks_its_data_at_construction():
    with pytest.raises(ValueError, match="`data`"):
        SharpnessMonitor("not data")


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"seed": -1}, "seed"),
        ({"seed": "a"}, "seed"),
        ({"training": "no"}, "training"),
        ({"every_n_steps": 0}, "every_n_steps"),
    ],
)
def test_gradient_noise_scale_checks_its_arguments_at_construction(kwargs, name):
    data = (np.zeros((64, 2), "float32"), np.zeros((64, 1), "float32"))
    with pytest.raises(ValueError, match=f"`{name}`"):
        GradientNoiseScale(data, small_batch_size=4, **kwargs)


LOG_KEYS = (
    "gradient_noise_scale",
    "gradient_noise_trace",
    "gradient_squared_norm",
    "hessian_top_eigenvalue",
    "hessian_trace",
    "effective_learning_rate_p5",
    "effective_learning_rate_median",
    "effective_learning_rate_p95",
)


class RecordLogs(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.keys = []

    def on_epoch_end(self, epoch, logs=None):
        self.keys.append(set(logs))


def test_log_producers_reach_callbacks_listed_before_them(tmp_path):
    rng = np.random.default_rng(5)
    x = rng.normal(size=(64, 3)).astype("float32")
    y = rng.normal(size=(64, 1)).astype("float32")
    model = linear_model(3)
    model.compile(optimizer=optimizers.Adam(0.01), loss="mse")
    recorder = RecordLogs()
    csv_path = tmp_path / "log.csv"
    callbacks = [
        keras.callbacks.CSVLogger(str(csv_path)),
        recorder,
        keras.callbacks.ModelCheckpoint(
            str(tmp_path / "best.weights.h5"),
            monitor="hessian_top_eigenvalue",
            save_weights_only=True,
            save_best_only=True,
            mode="min",
        ),
        GradientNoiseScale((x, y), small_batch_size=4, every_n_steps=2),
        SharpnessMonitor((x, y), trace_samples=2, max_iterations=5),
        OptimizerStateMonitor(),
    ]
    history = model.fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=callbacks)
    header = csv_path.read_text().splitlines()[0].split(",")
    assert set(LOG_KEYS) <= set(header)
    assert all(set(LOG_KEYS) <= keys for keys in recorder.keys)
    assert set(LOG_KEYS) <= set(history.history)
    assert (tmp_path / "best.weights.h5").exists()
    # The user's list is left as given.
    assert isinstance(callbacks[0], keras.callbacks.CSVLogger)

"""Tutorials 05 (regularization) and 06 (noise and mixing): their --quick runs.

Each tutorial runs once per module in `--quick` mode into a temporary folder; the
tests check the files it wrote, that its numbers are finite, and the identities it
claims against independent references: gradient-descent weight decay = the L2
penalty step by step (and a step written out in NumPy), Prechelt's criteria against
a float64 reimplementation of his definitions, Bishop's second-order expansion of
the noisy loss against its Monte Carlo estimate within the estimate's own error,
with the network's gradient and Laplacian checked by finite differences.
"""

import math

import keras
import numpy as np
import pytest
from test_tutorials import finite_numbers, load

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        keras.backend.backend() != "tensorflow",
        reason="the tutorials train with tf.function / TensorFlow",
    ),
]

FIGURES = {
    "05_regularization": (
        "05_ablation.png",
        "05_gap_vs_accuracy.png",
        "05_weight_decay_vs_l2.png",
        "05_prechelt.png",
    ),
    "06_noise_and_mixing": (
        "06_decision_boundaries.png",
        "06_smoothness.png",
        "06_tikhonov.png",
    ),
}
# A sentence of each section of the notes (seed/000_b60ef0605642693b.txt).
QUOTES = {
    "05_regularization": "학습을 방해해서 학습 데이터에 fitting되지",
    "06_noise_and_mixing": "왜 잘되는지는 모른다고 한다",
}


@pytest.mark.parametrize("name", sorted(FIGURES))
def test_writes_figures_and_summary(numbered, name):
    module, out, result, printed = numbered(name)
    summary = (out / f"{name}.md").read_text(encoding="utf-8")
    assert summary.startswith(f"# {name[:2]} — ")
    for figure in FIGURES[name]:
        data = (out / figure).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
        assert f"]({figure})" in summary
    assert "Run in " in summary and "CPU cores" in summary
    assert f"{out / name}.md" in printed
    assert "--quick" in module.__doc__
    assert QUOTES[name] in module.__doc__  # the notes' own words, quoted


def test_05_numbers_are_finite(numbered):
    result = numbered("05_regularization")[2]
    for key in ("rows", "identity", "sweep"):
        numbers = finite_numbers(result[key])
        assert numbers and np.all(np.isfinite(numbers)), key
    for stop in result["stops"].values():
        assert (
            np.isfinite(stop["val_accuracy"]) and 1 <= stop["used"] <= result["epochs"]
        )


def test_06_numbers_are_finite(numbered):
    result = numbered("06_noise_and_mixing")[2]
    numbers = finite_numbers(
        {k: v for k, v in result["rows"].items()}
    ) + finite_numbers(result["bishop"]["rows"])
    assert numbers and np.all(np.isfinite(numbers))


# 05: weight decay against the L2 penalty ---------------------------------------


def test_gradient_descent_weight_decay_is_the_l2_penalty_step_by_step(numbered):
    identity = numbered("05_regularization")[2]["identity"]
    float64 = identity["GradientDescent (η=0.1), float64"]
    float32 = identity["GradientDescent (η=0.1), float32"]
    adam = identity["Adam (η=0.001), float64"]
    assert len(float64["penalty_vs_decay"]) == 20
    # One update: what is left is rounding (measured below 1e-15 in float64) ...
    assert float64["penalty_vs_decay"].max() < 1e-12
    assert float32["penalty_vs_decay"].max() < 1e-6
    # ... while the regularization itself moved the weights by far more, so two
    # unregularized copies could not pass.
    assert float64["penalty_vs_none"][-1] > 1e-4
    # Under Adam the two are different algorithms from the first step on.
    assert adam["penalty_vs_decay"][0] > 1e-4
    assert adam["penalty_vs_decay"][-1] > 10 * adam["penalty_vs_decay"][0]


def test_one_step_of_decay_and_of_the_penalty_written_out():
    # The identity's two sides against NumPy: decoupled decay is
    # θ ← θ − ηλθ − ηg, the penalty α/2‖θ‖² adds αθ to the gradient.
    from keras_optnotes import optimizers, regularizers

    theta0 = np.array([[0.5, -1.25], [2.0, 0.125]])
    g = np.array([[0.3, -0.7], [0.05, 1.1]])
    eta, lam = 0.1, 0.01
    variable = keras.Variable(theta0, dtype="float64")
    optimizer = optimizers.GradientDescent(learning_rate=eta, weight_decay=lam)
    optimizer.apply([keras.ops.convert_to_tensor(g, "float64")], [variable])
    # Keras keeps η in a float32 variable; λ stays a Python float.
    eta32 = float(np.float32(eta))
    expected = theta0 - theta0 * lam * eta32 - eta32 * g
    np.testing.assert_allclose(variable.numpy(), expected, rtol=0, atol=1e-15)
    penalty = regularizers.ParameterNormPenalty(lam)
    assert float(penalty(keras.ops.convert_to_tensor(theta0))) == pytest.approx(
        lam / 2 * np.sum(theta0**2), rel=1e-6
    )


def test_adam_l2_shrinks_more_than_decoupled_decay(numbered):
    module, _, result, _ = numbered("05_regularization")
    strengths = module.SETTINGS[True]["strengths"]
    for sweep in result["sweep"]:
        none = sweep["none", 0.0]
        assert none["blank_left"] == pytest.approx(1.0, abs=1e-6)  # no data gradient
        for a in strengths:
            l2, decay = sweep["l2", a], sweep["decay", a]
            assert l2["kernel_norm"] < decay["kernel_norm"] <= none["kernel_norm"]
            assert l2["blank_left"] < decay["blank_left"] < 1.0
        # At α = λ = 1 the penalty wrecks the fit, decoupled decay does not.
        assert sweep["l2", 1.0]["val_loss"] > sweep["decay", 1.0]["val_loss"]


def test_ablation_rows_pair_each_technique_with_none_of_its_seed(numbered):
    result = numbered("05_regularization")[2]
    runs, rows = result["runs"], result["rows"]
    for (noise, technique), row in rows.items():
        gaps = [runs[noise, s][technique].loss_gap for s in range(result["seeds"])]
        nones = [runs[noise, s]["none"].loss_gap for s in range(result["seeds"])]
        np.testing.assert_allclose(
            row["delta_loss_gap_values"], np.subtract(gaps, nones)
        )
        assert row["gap_smaller"] == sum(g < n for g, n in zip(gaps, nones))
    # The unregularized run recorded its curves (for Prechelt), one value an epoch.
    history = runs[0.2, 0]["none"].history
    assert len(history["val_loss"]) == len(history["loss"]) == result["epochs"]


# 05: Prechelt's criteria ---------------------------------------------------------


def prechelt_reference(val, train, criterion, alpha=None, s=None, k=5):
    """Prechelt 1998's definitions, written out: the 1-based stopping epoch or None."""
    best = math.inf
    rises = 0
    for t in range(1, len(val) + 1):
        best = min(best, val[t - 1])
        gl = 100.0 * (val[t - 1] / best - 1.0)
        if criterion == "GL" and gl > alpha:
            return t
        if criterion == "PQ" and t % k == 0:
            strip = train[t - k : t]
            progress = 1000.0 * (sum(strip) / (k * min(strip)) - 1.0)
            if gl / progress > alpha:
                return t
        if criterion == "UP" and t % k == 0 and t > k:
            rises = rises + 1 if val[t - 1] > val[t - k - 1] else 0
            if rises >= s:
                return t
    return None


def test_replayed_criteria_match_prechelts_definitions():
    module = load("05_regularization")
    rng = np.random.default_rng(3)
    epochs = np.arange(1, 61)
    for trial in range(6):
        # A validation curve that falls, then rises with noise; a training curve
        # that keeps falling (with small plateaus, so that PQ's progress varies).
        turn = 10 + 5 * trial
        val = 1.0 / epochs + 0.004 * np.maximum(epochs - turn, 0)
        val = val + rng.normal(0, 0.002, size=60)
        train = 1.0 / epochs**1.5 + 0.01 + np.abs(rng.normal(0, 1e-3, size=60))
        for criterion, options in module.CRITERIA:
            expected = prechelt_reference(
                val,
                train,
                criterion,
                alpha=options.get("alpha"),
                s=options.get("successive_strips"),
                k=module.STRIP,
            )
            replayed = module.replay(criterion, options, val, train)
            assert replayed["stopped"] == expected, (trial, criterion, options)
            if expected is not None:
                # The weights kept are those of the best epoch up to the stop.
                assert replayed["used"] == int(np.argmin(val[:expected])) + 1
            else:
                assert replayed["used"] == len(val)
    # On this kind of curve every family stops at some threshold.
    assert module.replay("GL", {"alpha": 1.0}, val, train)["stopped"] is not None


# 06: noise and mixing -------------------------------------------------------------


def test_bishop_expansion_holds_at_small_sigma_within_the_monte_carlo_error(numbered):
    module, _, result, _ = numbered("06_noise_and_mixing")
    rows = {r["sigma"]: r for r in result["bishop"]["rows"]}
    small, larger = rows[module.SMALL_SIGMA], rows[0.01]
    # The expansion's remainder is O(σ⁴): bound it at the small σ by the deviation
    # measured at σ = 0.01 (plus its own 2 SE), scaled by (σ / 0.01)⁴ = 0.0081.
    remainder = (
        abs(larger["excess"] - larger["second_order"]) + 2 * larger["standard_error"]
    ) * (module.SMALL_SIGMA / 0.01) ** 4
    assert remainder < small["standard_error"]  # the test is limited by the MC error
    assert abs(small["excess"] - small["second_order"]) < (
        4 * small["standard_error"] + remainder
    )
    # The agreement is not loose: the standard error is a few % of D at most.
    assert small["standard_error"] < 0.05 * small["excess"]
    # And at σ = 1 (about twice the inputs' spread) the expansion is far off.
    assert abs(rows[1.0]["deviation_in_se"]) > 20


def test_bishop_terms_match_finite_differences(numbered):
    module, _, result, _ = numbered("06_noise_and_mixing")
    bishop = result["bishop"]
    model, x = bishop["model"], bishop["x"][:20]
    f, g, laplacian = module.gradient_and_laplacian(model, x)

    def value(points):
        return model(
            keras.ops.convert_to_tensor(points, "float64"), training=False
        ).numpy()[:, 0]

    def central(h):
        first = np.stack(
            [(value(x + h * e) - value(x - h * e)) / (2 * h) for e in np.eye(2)], axis=1
        )
        second = sum(
            (value(x + h * e) - 2 * value(x) + value(x - h * e)) / h**2
            for e in np.eye(2)
        )
        return first, second

    # Richardson's extrapolation of central differences: the h^2 error cancels, what
    # is left is O(h^4) (about 1e-7 here) and rounding of about 1e-16 / h^2.
    (g1, l1), (g2, l2) = central(1e-3), central(5e-4)
    np.testing.assert_allclose(g, (4 * g2 - g1) / 3, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(laplacian, (4 * l2 - l1) / 3, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(f, value(x), rtol=0, atol=1e-15)
    # The reported terms are the means of those quantities over the training points.
    f_all, g_all, lap_all = module.gradient_and_laplacian(model, bishop["x"])
    assert bishop["gradient_term"] == pytest.approx(
        np.mean(np.sum(g_all**2, 1)), rel=1e-12
    )
    assert bishop["curvature_term"] == pytest.approx(
        np.mean((f_all - bishop["t"]) * lap_all), rel=1e-12
    )


def test_coordinate_cutmix_pastes_coordinates_and_mixes_labels_by_their_share():
    module = load("06_noise_and_mixing")
    n = 400
    x = np.arange(2 * n, dtype=float).reshape(n, 2)  # every value names its row
    y = np.eye(n)  # every row its own class
    mixed, labels, pasted = module.coordinate_cutmix(
        x, y, 1.0, np.random.default_rng(0)
    )
    for i in range(n):
        k = int(pasted[i].sum())
        np.testing.assert_array_equal(mixed[i, ~pasted[i]], x[i, ~pasted[i]])
        if k == 0:
            np.testing.assert_array_equal(labels[i], y[i])
            continue
        rows = (mixed[i, pasted[i]] // 2).astype(int)
        j = rows[0]
        assert np.all(rows == j) and np.all(mixed[i, pasted[i]] == x[j, pasted[i]])
        share = k / 2
        expected = (1 - share) * y[i] + share * y[j]
        np.testing.assert_allclose(labels[i], expected, rtol=0, atol=1e-15)
    # α = 1: λ uniform, so k = round(2(1 − λ)) is 0, 1, 2 with chances ¼, ½, ¼.
    counts = np.bincount(pasted.sum(1), minlength=3) / n
    np.testing.assert_allclose(counts, [0.25, 0.5, 0.25], atol=0.08)


def test_keras_cutmix_on_points_mixes_labels_and_pastes_nothing(numbered):
    cutmix = numbered("06_noise_and_mixing")[2]["keras_cutmix"]
    assert cutmix["coordinates_pasted"] == 0.0
    assert cutmix["label_moved"] > 0.1


def test_contour_length_of_known_curves():
    module = load("06_noise_and_mixing")
    axis, grid = module.grid_points(401)
    size = len(axis)
    radius = np.hypot(grid[:, 0], grid[:, 1]).reshape(size, size)
    circle = module.contour_measures(axis, radius, level=0.5)
    assert circle["pieces"] == 1
    assert circle["length"] == pytest.approx(2 * np.pi * 0.5, rel=1e-3)
    line = module.contour_measures(axis, grid[:, 0].reshape(size, size), level=0.5)
    # x₁ = ½ inside r ≤ DISK: a chord; the segments cut at the rim lose < 1 step.
    chord = 2 * math.sqrt(module.DISK**2 - 0.25)
    step = axis[1] - axis[0]
    assert chord - 2 * step < line["length"] <= chord + 1e-9


def test_bayes_probability_of_the_two_arms():
    module = load("06_noise_and_mixing")
    rng = np.random.default_rng(1)
    points = rng.uniform(-1, 1, size=(50, 2))
    p = module.bayes_probability(points, 0.15, 1.0)
    # Arm 1 is arm 0 turned by π: p₁(−x) = 1 − p₁(x).
    np.testing.assert_allclose(
        module.bayes_probability(-points, 0.15, 1.0), 1 - p, atol=1e-12
    )
    # A point on arm 0 (s = 0.75: φ = 1.5π) far from arm 1 is class 0.
    on_arm = np.array([[0.75 * np.cos(1.5 * np.pi), 0.75 * np.sin(1.5 * np.pi)]])
    assert module.bayes_probability(on_arm, 0.15, 1.0)[0] < 0.05

"""Tutorials 05 (regularization) and 06 (noise and mixing): their quick runs under
papermill, and their own functions.

Each notebook runs once per module with `QUICK = True` into a temporary folder; the
tests check the figures it wrote and showed, the tables it showed, that its numbers
are finite, and the identities it claims against independent references:
gradient-descent weight decay = the L2 penalty step by step (and a step written out
in NumPy), Prechelt's criteria against a float64 reimplementation of his definitions,
Bishop's second-order expansion of the noisy loss against its Monte Carlo estimate
within the estimate's own error, with the network's gradient and Laplacian checked
against a NumPy float64 copy of the network (its gradient in closed form, its
Laplacian by finite differences).
"""

import math

import keras
import numpy as np
import pytest
from notebooks import definitions, execute, read, tensorflow_only

pytestmark = [pytest.mark.slow, tensorflow_only]

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
# A sentence of each section of the notes, quoted in the notebook's first cell.
QUOTES = {
    "05_regularization": "학습을 방해해서 학습 데이터에",
    "06_noise_and_mixing": "왜 잘되는지는 모른다고 한다",
}


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """Each notebook's quick run, once per module, lazily: call it with the name."""
    runs = {}

    def run(name):
        if name not in runs:
            runs[name] = execute(name, tmp_path_factory.mktemp(name))
        return runs[name]

    return run


@pytest.fixture(scope="module")
def defined():
    """Each notebook's functions and constants, without running it."""
    namespaces = {}

    def get(name):
        if name not in namespaces:
            namespaces[name] = definitions(name)
        return namespaces[name]

    return get


def numbers(value):
    """Every number inside a JSON value, flattened; None (a NaN or an infinity that
    `write_json` wrote as null) counts as nan."""
    if isinstance(value, dict):
        return [x for v in value.values() for x in numbers(v)]
    if isinstance(value, list):
        return [x for v in value for x in numbers(v)]
    if value is None:
        return [math.nan]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return [float(value)]
    return []


def shown_rows(executed, first_cell: str) -> list[list[str]]:
    """The cells of every displayed table row whose first cell is `first_cell`."""
    return [
        [cell.strip() for cell in line.strip().strip("|").split(" | ")]
        for text in executed.markdown_outputs()
        for line in text.splitlines()
        if line.startswith(f"| {first_cell} |")
    ]


@pytest.mark.parametrize("name", sorted(FIGURES))
def test_writes_and_shows_its_figures(executed, name):
    run = executed(name)
    run.assert_shows(FIGURES[name], min_bytes=20_000)
    assert run.results["seeds"] == 1
    assert QUOTES[name] in read(name).cells[0].source  # the notes' own words


def test_05_numbers_are_finite(executed):
    results = executed("05_regularization").results
    for key in ("rows", "identity", "sweep"):
        found = numbers(results[key])
        assert found and np.all(np.isfinite(found)), key
    for noise in results["stops"].values():
        for seed in noise.values():
            for stop in seed.values():
                assert np.isfinite(stop["val_accuracy"])
                assert 1 <= stop["used"] <= results["epochs"]


def test_06_numbers_are_finite(executed):
    results = executed("06_noise_and_mixing").results
    found = numbers(results["rows"]) + numbers(results["bishop"]["rows"])
    assert found and np.all(np.isfinite(found))


# 05: the ablation -----------------------------------------------------------------


def test_ablation_rows_pair_each_technique_with_none_of_its_seed(executed):
    results = executed("05_regularization").results
    runs, rows, seeds = results["runs"], results["rows"], results["seeds"]
    for noise, techniques in rows.items():
        for technique, row in techniques.items():
            gaps = [
                runs[noise][str(s)][technique]["val_loss"]
                - runs[noise][str(s)][technique]["train_loss"]
                for s in range(seeds)
            ]
            nones = [
                runs[noise][str(s)]["none"]["val_loss"]
                - runs[noise][str(s)]["none"]["train_loss"]
                for s in range(seeds)
            ]
            np.testing.assert_allclose(
                row["delta_loss_gap_values"], np.subtract(gaps, nones), atol=1e-15
            )
            assert row["loss_gap"]["mean"] == pytest.approx(np.mean(gaps), rel=1e-12)
            assert row["gap_smaller"] == sum(g < n for g, n in zip(gaps, nones))
    # The unregularized run recorded its curves (for Prechelt), one value an epoch.
    history = runs["0.2"]["0"]["none"]["history"]
    assert len(history["val_loss"]) == len(history["loss"]) == results["epochs"]


def test_ablation_tables_show_each_technique_and_its_gap(executed):
    run = executed("05_regularization")
    runs = run.results["runs"]
    for technique, label in (("none", "none"), ("l2_penalty", "L2 penalty α=1e-3")):
        shown = shown_rows(run, label)
        assert len(shown) == 2  # clean labels, then noisy labels
        for cells, noise in zip(shown, ("0.0", "0.2"), strict=True):
            seed0 = runs[noise]["0"][technique]
            # one seed: the cell is the value, 4 significant digits
            assert cells[3] == f"{seed0['val_loss'] - seed0['train_loss']:.4g}"
            assert cells[5] == f"{100 * seed0['val_accuracy']:.4g}"


# 05: weight decay against the L2 penalty ---------------------------------------


def test_gradient_descent_weight_decay_is_the_l2_penalty_step_by_step(executed):
    identity = executed("05_regularization").results["identity"]
    float64 = {
        k: np.asarray(v)
        for k, v in identity["GradientDescent (η=0.1), float64"].items()
    }
    float32 = {
        k: np.asarray(v)
        for k, v in identity["GradientDescent (η=0.1), float32"].items()
    }
    adam = {k: np.asarray(v) for k, v in identity["Adam (η=0.001), float64"].items()}
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


def test_adam_l2_shrinks_more_than_decoupled_decay(executed, defined):
    strengths = defined("05_regularization")["SETTINGS"][True]["strengths"]
    for sweep in executed("05_regularization").results["sweep"]:
        none = sweep["none"]["0.0"]
        assert none["blank_left"] == pytest.approx(1.0, abs=1e-6)  # no data gradient
        for a in strengths:
            l2, decay = sweep["l2"][str(a)], sweep["decay"][str(a)]
            assert l2["kernel_norm"] < decay["kernel_norm"] <= none["kernel_norm"]
            assert l2["blank_left"] < decay["blank_left"] < 1.0
        # At α = λ = 1 the penalty wrecks the fit, decoupled decay does not.
        assert sweep["l2"]["1.0"]["val_loss"] > sweep["decay"]["1.0"]["val_loss"]


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


def test_replayed_criteria_match_prechelts_definitions(defined):
    module = defined("05_regularization")
    rng = np.random.default_rng(3)
    epochs = np.arange(1, 61)
    for trial in range(6):
        # A validation curve that falls, then rises with noise; a training curve
        # that keeps falling (with small plateaus, so that PQ's progress varies).
        turn = 10 + 5 * trial
        val = 1.0 / epochs + 0.004 * np.maximum(epochs - turn, 0)
        val = val + rng.normal(0, 0.002, size=60)
        train = 1.0 / epochs**1.5 + 0.01 + np.abs(rng.normal(0, 1e-3, size=60))
        for criterion, options in module["CRITERIA"]:
            expected = prechelt_reference(
                val,
                train,
                criterion,
                alpha=options.get("alpha"),
                s=options.get("successive_strips"),
                k=module["STRIP"],
            )
            replayed = module["replay"](criterion, options, val, train)
            assert replayed["stopped"] == expected, (trial, criterion, options)
            if expected is not None:
                # The weights kept are those of the best epoch up to the stop.
                assert replayed["used"] == int(np.argmin(val[:expected])) + 1
            else:
                assert replayed["used"] == len(val)
    # On this kind of curve every family stops at some threshold.
    assert module["replay"]("GL", {"alpha": 1.0}, val, train)["stopped"] is not None


def test_replayed_stops_score_the_epoch_they_restore(executed):
    results = executed("05_regularization").results
    for noise, by_seed in results["stops"].items():
        for seed, by_criterion in by_seed.items():
            accuracy = np.array(
                results["runs"][noise][seed]["none"]["history"]["val_accuracy"]
            )
            for stop in by_criterion.values():
                assert stop["val_accuracy"] == 100 * accuracy[stop["used"] - 1]
                assert stop["best_accuracy"] == 100 * accuracy.max()
                assert stop["final_accuracy"] == 100 * accuracy[-1]


# 06: noise and mixing -------------------------------------------------------------


def test_bishop_expansion_holds_at_small_sigma_within_the_monte_carlo_error(
    executed, defined
):
    small_sigma = defined("06_noise_and_mixing")["SMALL_SIGMA"]
    bishop = executed("06_noise_and_mixing").results["bishop"]
    rows = {r["sigma"]: r for r in bishop["rows"]}
    small, larger = rows[small_sigma], rows[0.01]
    # The expansion's remainder is O(σ⁴): bound it at the small σ by the deviation
    # measured at σ = 0.01 (plus its own 2 SE), scaled by (σ / 0.01)⁴ = 0.0081.
    remainder = (
        abs(larger["excess"] - larger["second_order"]) + 2 * larger["standard_error"]
    ) * (small_sigma / 0.01) ** 4
    assert remainder < small["standard_error"]  # the test is limited by the MC error
    assert abs(small["excess"] - small["second_order"]) < (
        4 * small["standard_error"] + remainder
    )
    # The agreement is not loose: the standard error is a few % of D at most.
    assert small["standard_error"] < 0.05 * small["excess"]
    # And at σ = 1 (about twice the inputs' spread) the expansion is far off.
    assert abs(rows[1.0]["deviation_in_se"]) > 20
    # The predictions are the two terms times σ².
    for r in bishop["rows"]:
        assert r["tikhonov"] == pytest.approx(
            r["sigma"] ** 2 * bishop["gradient_term"], rel=1e-12
        )
        assert r["second_order"] == pytest.approx(
            r["sigma"] ** 2 * (bishop["gradient_term"] + bishop["curvature_term"]),
            rel=1e-12,
        )


def numpy_network(weights):
    """The 2 → 16 → 16 → 1 tanh network in float64 NumPy: f(x) and ∇ₓf(x) in closed
    form, ∇ₓf = W₁ diag(1 − a₁²) W₂ diag(1 − a₂²) W₃."""
    w1, b1, w2, b2, w3, b3 = (np.asarray(w, np.float64) for w in weights)

    def value(x):
        return (np.tanh(np.tanh(x @ w1 + b1) @ w2 + b2) @ w3 + b3)[:, 0]

    def gradient(x):
        a1 = np.tanh(x @ w1 + b1)
        a2 = np.tanh(a1 @ w2 + b2)
        back = (1 - a2**2) * w3[:, 0]  # ∂f/∂z₂, (n, 16)
        back = ((back @ w2.T) * (1 - a1**2)) @ w1.T  # ∂f/∂x, (n, 2)
        return back

    return value, gradient


def test_bishop_terms_match_a_numpy_copy_of_the_network(executed, defined):
    module = defined("06_noise_and_mixing")
    bishop = executed("06_noise_and_mixing").results["bishop"]
    x_all, t_all = np.asarray(bishop["x"]), np.asarray(bishop["t"])
    value, gradient = numpy_network(bishop["weights"])
    # The notebook's nested autodiff, on its network rebuilt with the run's weights.
    model = module["tikhonov_network"]()
    model.set_weights([np.asarray(w, np.float64) for w in bishop["weights"]])
    x = x_all[:20]
    f, g, laplacian = module["gradient_and_laplacian"](model, x)
    np.testing.assert_allclose(f, value(x), rtol=0, atol=1e-13)
    np.testing.assert_allclose(g, gradient(x), rtol=1e-12, atol=1e-13)

    def second_differences(h):
        return sum(
            (value(x + h * e) - 2 * value(x) + value(x - h * e)) / h**2
            for e in np.eye(2)
        )

    # Richardson's extrapolation of central differences: the h^2 error cancels, what
    # is left is O(h^4) (about 1e-7 here) and rounding of about 1e-16 / h^2.
    l1, l2 = second_differences(1e-3), second_differences(5e-4)
    np.testing.assert_allclose(laplacian, (4 * l2 - l1) / 3, rtol=1e-5, atol=1e-5)
    # The reported terms are the means of those quantities over the training points.
    f_all = value(x_all)
    assert bishop["loss"] == pytest.approx(np.mean((f_all - t_all) ** 2), rel=1e-10)
    assert bishop["gradient_term"] == pytest.approx(
        np.mean(np.sum(gradient(x_all) ** 2, 1)), rel=1e-10
    )
    _, _, lap_all = module["gradient_and_laplacian"](model, x_all)
    assert bishop["curvature_term"] == pytest.approx(
        np.mean((f_all - t_all) * lap_all), rel=1e-9
    )


def test_bishop_table_shows_the_ratios(executed):
    run = executed("06_noise_and_mixing")
    for r in run.results["bishop"]["rows"]:
        (cells,) = shown_rows(run, f"{r['sigma']:.4g}")
        assert cells[5] == f"{r['excess'] / r['second_order']:.4g}"


def test_smoothness_table_counts_against_none_of_the_same_seed(executed, defined):
    variants = defined("06_noise_and_mixing")["VARIANTS"]
    run = executed("06_noise_and_mixing")
    runs, rows = run.results["runs"], run.results["rows"]
    for variant, label in variants.items():
        measured = runs[variant]["0"]
        none = runs["none"]["0"]
        assert rows[variant]["shorter"] == int(measured["length"] < none["length"])
        assert rows[variant]["better"] == int(
            measured["val_accuracy"] > none["val_accuracy"]
        )
        (cells,) = shown_rows(run, label)
        assert cells[1] == f"{measured['length']:.4g}"
        assert cells[5] == f"{measured['val_accuracy']:.4g}"
        if variant != "none":
            assert cells[6] == f"{rows[variant]['shorter']}/1"
    bayes = run.results["bayes"]
    assert bayes["pieces"] >= 1 and 0 < bayes["length"]
    assert any(f"{bayes['length']:.2f} long" in text for text in run.markdown_outputs())


def test_coordinate_cutmix_pastes_coordinates_and_mixes_labels_by_their_share(
    defined,
):
    coordinate_cutmix = defined("06_noise_and_mixing")["coordinate_cutmix"]
    n = 400
    x = np.arange(2 * n, dtype=float).reshape(n, 2)  # every value names its row
    y = np.eye(n)  # every row its own class
    mixed, labels, pasted = coordinate_cutmix(x, y, 1.0, np.random.default_rng(0))
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


def test_keras_cutmix_on_points_mixes_labels_and_pastes_nothing(executed):
    cutmix = executed("06_noise_and_mixing").results["keras_cutmix"]
    assert cutmix["coordinates_pasted"] == 0.0
    assert cutmix["label_moved"] > 0.1


def test_contour_length_of_known_curves(defined):
    module = defined("06_noise_and_mixing")
    axis, grid = module["grid_points"](401)
    size = len(axis)
    radius = np.hypot(grid[:, 0], grid[:, 1]).reshape(size, size)
    circle = module["contour_measures"](axis, radius, level=0.5)
    assert circle["pieces"] == 1
    assert circle["length"] == pytest.approx(2 * np.pi * 0.5, rel=1e-3)
    line = module["contour_measures"](axis, grid[:, 0].reshape(size, size), level=0.5)
    # x₁ = ½ inside r ≤ DISK: a chord; the segments cut at the rim lose < 1 step.
    chord = 2 * math.sqrt(module["DISK"] ** 2 - 0.25)
    step = axis[1] - axis[0]
    assert chord - 2 * step < line["length"] <= chord + 1e-9


def test_bayes_probability_of_the_two_arms(defined):
    bayes_probability = defined("06_noise_and_mixing")["bayes_probability"]
    rng = np.random.default_rng(1)
    points = rng.uniform(-1, 1, size=(50, 2))
    p = bayes_probability(points, 0.15, 1.0)
    # Arm 1 is arm 0 turned by π: p₁(−x) = 1 − p₁(x).
    np.testing.assert_allclose(bayes_probability(-points, 0.15, 1.0), 1 - p, atol=1e-12)
    # A point on arm 0 (s = 0.75: φ = 1.5π) far from arm 1 is class 0.
    on_arm = np.array([[0.75 * np.cos(1.5 * np.pi), 0.75 * np.sin(1.5 * np.pi)]])
    assert bayes_probability(on_arm, 0.15, 1.0)[0] < 0.05

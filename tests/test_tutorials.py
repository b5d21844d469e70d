"""Tutorials 01–03 (batch-size modes, optimizer paths, adaptive learning rates): each
notebook's quick run, checked against independent references.

Each notebook runs once per module under papermill (`QUICK = True`) into a temporary
folder; the tests check the figures it wrote and showed, the tables and verdicts it
showed, and the numbers of its JSON against references computed here: closed forms,
finite differences, float64 NumPy implementations of the notes' equations, Wilson's
interval with scipy's normal quantile. Each notebook's own functions and constants
(`notebooks.definitions`) give the settings and the test functions, never the
expected values.
"""

import math

import numpy as np
import pytest
from notebooks import definitions, execute, tensorflow_only
from scipy import stats

pytestmark = [pytest.mark.slow, tensorflow_only]

MODES = "01_batch_size_modes"
PATHS = "02_optimizer_paths"
ADAPTIVE = "03_adaptive_learning_rates"
FIGURES = {
    MODES: ("01_batch_size_modes.png", "01_escape.png"),
    PATHS: (
        "02_optimizer_paths.png",
        "02_convergence.png",
        "02_momentum_vs_nesterov.png",
        "02_momentum_beta.png",
    ),
    ADAPTIVE: (
        "03_effective_step_size.png",
        "03_units.png",
        "03_bias_correction.png",
        "03_epsilon.png",
    ),
}


@pytest.fixture(scope="module")
def modes(tmp_path_factory):
    return execute(MODES, tmp_path_factory.mktemp(MODES))


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    return execute(PATHS, tmp_path_factory.mktemp(PATHS))


@pytest.fixture(scope="module")
def adaptive(tmp_path_factory):
    return execute(ADAPTIVE, tmp_path_factory.mktemp(ADAPTIVE))


@pytest.fixture(scope="module")
def modes_code():
    return definitions(MODES)


@pytest.fixture(scope="module")
def paths_code():
    return definitions(PATHS)


@pytest.fixture(scope="module")
def adaptive_code():
    return definitions(ADAPTIVE)


def floats(value) -> np.ndarray:
    """A JSON list (nested, `None` for NaN or ±inf) as a float64 array."""
    return np.asarray(value, dtype=np.float64)


@pytest.mark.parametrize(
    "fixture, name", [("modes", MODES), ("paths", PATHS), ("adaptive", ADAPTIVE)]
)
def test_writes_and_shows_its_figures_and_run_time(fixture, name, request):
    executed = request.getfixturevalue(fixture)
    executed.assert_shows(FIGURES[name])
    assert "CPU cores" in executed.printed()
    assert executed.results["seeds"] == 1  # QUICK's default (02 has no seeds)
    assert executed.markdown_outputs()  # tables and verdicts, rendered


# 01 ------------------------------------------------------------------------------


def test_batch_mode_curves_are_finite_and_timed(modes):
    # The times to the target may be nan (not reached in the smoke run's budget):
    # the recorded curves must be finite.
    for runs in modes.results["results"].values():
        for run in runs:
            for key in ("loss", "seconds", "steps", "epochs"):
                assert np.all(np.isfinite(floats(run[key]))), key
            assert np.all(np.diff(run["seconds"]) >= 0)


def test_full_batch_escape_rows_are_plain_gradient_descent(modes, modes_code):
    escaped = modes.results["escape"]
    runs, steps = escaped["runs"], escaped["steps"]
    # The first block of rows: the full gradient, no noise.
    theta, end = floats(escaped["start"])[:runs], floats(escaped["end"])[:runs]
    # Independent reference: GD with Keras' cosine decay (in float32, as Keras
    # computes schedules), written out in NumPy.
    rate0 = modes_code["ESCAPE_LEARNING_RATE"]
    for t in range(steps):
        rate = np.float32(rate0 * 0.5 * (1 + np.cos(np.pi * t / steps)))
        x, y = theta[:, 0], theta[:, 1]
        theta = theta - float(rate) * np.stack([4 * x * (x**2 - 1) + 0.3, y], axis=1)
    np.testing.assert_allclose(end, theta, rtol=1e-5, atol=1e-7)


def test_noise_lets_small_batches_escape(modes):
    escaped = modes.results["escape"]
    rows = {row["batch"]: row for row in escaped["rows"]}
    # The full gradient cannot cross the ridge from the poor basin; batch 1 does.
    assert rows["full"]["crossed"] == rows["full"]["ended"] == 0
    assert rows[1]["crossed"] > 0
    assert rows[1]["crossed"] >= rows[64]["crossed"]
    assert len(modes.results["claims"]) == 3


def test_escape_table_is_wilson_and_the_final_values(modes, modes_code):
    escaped = modes.results["escape"]
    runs, z = escaped["runs"], stats.norm.ppf(0.975)
    end = floats(escaped["end"])
    ridge = modes_code["RIDGE"]
    for k, row in enumerate(escaped["rows"]):
        part = end[k * runs : (k + 1) * runs]
        assert row["ended"] == int(np.sum(part[:, 0] < ridge))
        assert row["crossed"] >= row["ended"]
        for key in ("crossed", "ended"):
            # Wilson's score interval, from its definition: the p with
            # |p̂ − p| = z √(p (1 − p) / n), the roots of a quadratic in p.
            p_hat = row[key] / runs
            a, b, c = 1 + z**2 / runs, -(2 * p_hat + z**2 / runs), p_hat**2
            root = math.sqrt(b**2 - 4 * a * c)
            roots = np.clip([(-b - root) / (2 * a), (-b + root) / (2 * a)], 0, 1)
            np.testing.assert_allclose(
                row[f"{key}_interval"], roots, rtol=1e-12, atol=1e-15
            )
        x, y = part[:, 0], part[:, 1]
        f = (x**2 - 1) ** 2 + 0.3 * x + 0.5 * y**2
        assert row["final_f"]["mean"] == pytest.approx(np.mean(f), rel=1e-12)
        assert row["final_f"]["low"] == pytest.approx(f.min(), rel=1e-12)
        assert row["final_f"]["high"] == pytest.approx(f.max(), rel=1e-12)
        assert row["final_f"]["std"] == pytest.approx(np.std(f, ddof=1), rel=1e-9)


def test_batch_modes_train_and_time(modes):
    results, rows = modes.results["results"], modes.results["rows"]
    for batch, runs in results.items():
        for run in runs:
            assert run["loss"][-1] < run["loss"][0]  # every mode learns something
            assert run["steps"][-1] == run["steps_per_epoch"] * run["epochs"][-1]
            assert run["ms_per_step"] > 0
        # The table's cells are the mean over seeds of the runs' own numbers.
        per_epoch = [r["ms_per_step"] * r["steps_per_epoch"] / 1e3 for r in runs]
        assert rows[batch]["seconds_per_epoch"]["mean"] == pytest.approx(
            np.mean(per_epoch), rel=1e-12
        )
        assert rows[batch]["final_loss"]["mean"] == pytest.approx(
            np.mean([r["loss"][-1] for r in runs]), rel=1e-12
        )
    # One epoch of batch 1 is many more updates than one of batch 32.
    assert (
        rows["1"]["seconds_per_epoch"]["mean"] > rows["32"]["seconds_per_epoch"]["mean"]
    )


def test_shows_the_tables_and_the_claims(modes):
    shown = "\n".join(modes.markdown_outputs())
    assert "| mode | η |" in shown and "| batch | ever crossed the ridge |" in shown
    for claim in modes.results["claims"]:
        assert claim in shown


# 02 ------------------------------------------------------------------------------


def test_test_function_gradients_match_finite_differences(paths_code):
    rng = np.random.default_rng(0)
    for function in paths_code["FUNCTIONS"]:
        points = rng.uniform(-1.5, 1.5, size=(5, 2))
        h = 1e-6
        numeric = np.stack(
            [
                (
                    function.value(*(points + h * e).T)
                    - function.value(*(points - h * e).T)
                )
                / (2 * h)
                for e in np.eye(2)
            ],
            axis=1,
        )
        np.testing.assert_allclose(
            function.gradient(points), numeric, rtol=1e-6, atol=1e-6
        )


def test_nesterov_forms_give_the_same_iterates(paths, paths_code):
    beta = paths_code["MOMENTUM"]
    gradient = paths_code["stacked_gradient"]
    start = np.array([f.start for f in paths_code["FUNCTIONS"]])
    checked = 0
    for run in paths.results["runs"]:
        if run["rule"] != "NesterovMomentum":
            continue
        phi = floats(run["path"])
        # The notes' look-ahead form, written out here independently, in float64, with
        # η as Keras stores it (a float32 variable).
        eta = float(np.float32(run["learning_rate"]))
        theta, a = start.copy(), np.zeros_like(start)
        # The runs at the larger η diverge (to 1e80 on Rosenbrock): no warnings.
        with np.errstate(over="ignore", invalid="ignore"):
            for t in range(1, len(phi)):
                a = beta * a + gradient(theta - eta * beta * a)
                theta = theta - eta * a
                lookahead = theta - eta * beta * a
                bounded = np.abs(lookahead) < 1e6  # not the runs that diverge
                np.testing.assert_allclose(
                    phi[t][bounded], lookahead[bounded], rtol=1e-12, atol=1e-12
                )
        checked += 1
    assert checked == 2
    # And the notebook's own check, which it reports, agrees.
    nesterov = paths.results["nesterov"]
    assert len(nesterov) == 2
    assert max(max(r["weights"], r["accumulators"]) for r in nesterov) < 1e-12
    shown = "\n".join(paths.markdown_outputs())
    assert "largest relative difference" in shown


def test_gradient_descent_on_the_quadratic_is_the_closed_form(paths):
    checked = 0
    for run in paths.results["runs"]:
        if run["rule"] != "GradientDescent":
            continue
        path = floats(run["path"])
        eta = float(np.float32(run["learning_rate"]))
        t = np.arange(len(path))
        expected = np.stack([-4.0 * (1 - eta) ** t, 1.0 * (1 - 50 * eta) ** t], axis=1)
        np.testing.assert_allclose(path[:, 0], expected, rtol=1e-12, atol=1e-15)
        checked += 1
    assert checked == 2


def test_nesterov_swings_less_past_the_minimum(paths):
    overshoots = paths.results["overshoots"]
    for beta in ("0.9", "0.95"):
        rows = overshoots[beta]
        assert 0 < rows["NesterovMomentum"]["overshoot"] < rows["Momentum"]["overshoot"]
        for row in rows.values():
            x = floats(row["path"])[:, 0]
            assert row["overshoot"] == max(0.0, x.max())
            np.testing.assert_allclose(
                row["distance"], np.linalg.norm(floats(row["path"]), axis=1), rtol=1e-15
            )


def first_step_staying_below(gap: np.ndarray, tolerance: float) -> int | None:
    """The first step from which every later gap is finite and below `tolerance`."""
    below = np.isfinite(gap) & (gap < tolerance)
    if not below[-1]:
        return None
    for t in range(len(gap) - 1, -1, -1):
        if not below[t]:
            return t + 1
    return 0


def test_chosen_learning_rate_is_the_best_of_the_grid(paths, paths_code):
    functions = paths_code["FUNCTIONS"]
    tolerance = paths_code["TOLERANCE"]
    for rule, by_function in paths.results["chosen"].items():
        for k, function in enumerate(functions):
            best = by_function[function.name]
            finals, counts = [], []
            for run in paths.results["runs"]:
                if run["rule"] != rule:
                    continue
                path = floats(run["path"])[:, k]
                with np.errstate(over="ignore", invalid="ignore"):
                    gap = function.value(path[:, 0], path[:, 1]) - function.minimum
                counts.append(first_step_staying_below(gap, tolerance))
                if np.isfinite(gap[-1]):
                    finals.append(gap[-1])
            reached = [c for c in counts if c is not None]
            if reached:
                assert best["steps"] == min(reached), (rule, function.name)
            elif finals:
                assert best["steps"] is None
                assert best["final_gap"] == pytest.approx(min(finals), rel=1e-12)
            else:  # every rate diverged: the gap is infinite, null in JSON
                assert best["steps"] is None and best["final_gap"] is None


def test_heavy_ball_contraction_is_the_companion_matrix_spectral_radius(paths_code):
    contraction = paths_code["heavy_ball_contraction"]
    rng = np.random.default_rng(0)
    for eta, beta in zip(rng.uniform(0.001, 0.08, 20), rng.uniform(0.0, 0.99, 20)):
        # e_{t+1} = (1 + β − ηλ) e_t − β e_{t−1}: the companion matrix per curvature.
        radius = max(
            np.max(np.abs(np.linalg.eigvals([[1 + beta - eta * lam, -beta], [1, 0]])))
            for lam in (1.0, 50.0)
        )
        assert contraction(eta, beta) == pytest.approx(radius, rel=1e-10)
    # Polyak's optimum: η* = 4/(1 + √50)², β* = ((√50 − 1)/(√50 + 1))², rate √β*.
    # Both curvatures have a double root there, which np.roots finds to about √ε.
    root = math.sqrt(50.0)
    optimal_rate, optimal_beta = paths_code["OPTIMAL_RATE"], paths_code["OPTIMAL_BETA"]
    assert optimal_rate == pytest.approx(4 / (1 + root) ** 2, rel=1e-15)
    assert optimal_beta == pytest.approx(((root - 1) / (root + 1)) ** 2, rel=1e-15)
    assert contraction(optimal_rate, optimal_beta) == pytest.approx(
        (root - 1) / (root + 1), rel=1e-6
    )


def test_momentum_sweep_paths_are_the_heavy_ball_in_numpy(paths, paths_code):
    sweep = paths.results["sweep"]
    tolerance = paths_code["TOLERANCE"]
    for row in sweep["rows"]:
        if row["steps"] is None:
            continue
        eta, beta = row["learning_rate"], row["beta"]
        theta, a = np.array([-4.0, 1.0]), np.zeros(2)
        path = [theta]
        for _ in range(sweep["steps"]):
            a = beta * a + np.array([1.0, 50.0]) * theta
            theta = theta - eta * a
            path.append(theta)
        path = np.array(path)
        np.testing.assert_allclose(floats(row["path"]), path, rtol=1e-10, atol=1e-14)
        gap = 0.5 * (path[:, 0] ** 2 + 50 * path[:, 1] ** 2)
        above = np.flatnonzero(gap >= tolerance)
        assert row["steps"] == above[-1] + 1


def test_momentum_sweep_finds_the_closed_form_beta(paths):
    rows = paths.results["sweep"]["rows"]
    best = min(
        (r for r in rows if r["steps"] is not None),
        key=lambda r: (r["steps"], r["beta"]),
    )
    # The quick sweep's β are 0, 0.55, 0.6 and 0.9; β* = 0.566 lies between the two
    # middle ones, and 0.9 is far slower.
    assert best["beta"] in (0.55, 0.6)
    at_09 = next(r for r in rows if r["beta"] == 0.9)
    assert at_09["steps"] is None or at_09["steps"] > 2 * best["steps"]
    shown = "\n".join(paths.markdown_outputs())
    assert f"the fewest steps, {best['steps']}, at β = {best['beta']:g}" in shown


def test_rotation_leaves_gradient_descent_unchanged_and_changes_adagrad(
    paths, paths_code
):
    names = [f.name for f in paths_code["FUNCTIONS"]]
    aligned, rotated = names.index("quadratic"), names.index("rotated quadratic")
    rotation = np.array([[1.0, -1.0], [1.0, 1.0]]) / math.sqrt(2.0)
    differences = {}
    for run in paths.results["runs"]:
        path = floats(run["path"])
        turned = path[:, aligned] @ rotation.T  # R θ, row by row
        with np.errstate(invalid="ignore"):
            bounded = np.all(np.abs(turned) < 1e6, axis=1)  # not the runs that diverge
        difference = np.max(
            np.abs(path[bounded, rotated] - turned[bounded])
            / (1.0 + np.abs(turned[bounded]))
        )
        differences.setdefault(run["rule"], []).append(difference)
    for rule in ("GradientDescent", "Momentum", "NesterovMomentum"):
        assert max(differences[rule]) < 1e-12
    assert min(differences["Adagrad"]) > 1e-3


# 03 ------------------------------------------------------------------------------


def leaves(value):
    """Every scalar inside a JSON value, strings (formatted cells) left out."""
    if isinstance(value, dict):
        for v in value.values():
            yield from leaves(v)
    elif isinstance(value, list):
        for v in value:
            yield from leaves(v)
    elif not isinstance(value, str):
        yield value


def test_adaptive_tables_are_finite(adaptive):
    # JSON writes NaN and infinities as null: every number must be there.
    for key in ("decay_rows", "unit_rows", "bias_rows", "knees"):
        numbers = list(leaves(adaptive.results[key]))
        assert numbers and None not in numbers, key
        assert np.all(np.isfinite(numbers)), key


def test_adagrad_step_size_only_falls(adaptive):
    histories = adaptive.results["histories"]
    history = histories["Adagrad"][0]
    assert np.all(np.diff(history["effective_learning_rate_median"]) < 0)
    for key in ("p5", "p95"):  # G only grows, so every percentile can only fall
        assert np.all(np.diff(history[f"effective_learning_rate_{key}"]) <= 0)
    rows = adaptive.results["decay_rows"]
    for name, runs in histories.items():
        medians = floats([r["effective_learning_rate_median"] for r in runs])
        ratio = medians[:, -1] / medians[:, 0]
        assert rows[name]["ratio"]["mean"] == pytest.approx(ratio.mean(), rel=1e-12)
        falling = np.sum(np.diff(medians, axis=1) < 0, axis=1)
        assert rows[name]["epochs_falling"]["mean"] == pytest.approx(falling.mean())
    assert rows["Adagrad"]["ratio"]["mean"] < rows["RMSprop"]["ratio"]["mean"]
    assert rows["Adagrad"]["ratio"]["mean"] < rows["Adam"]["ratio"]["mean"]


def test_first_step_ratios_in_two_units_match_hand_computed_steps(
    adaptive, adaptive_code
):
    _, gradient, start = adaptive_code["least_squares"](0)
    scale, unit_rules = adaptive_code["SCALE"], adaptive_code["UNIT_RULES"]
    g = gradient(start)[0]
    g_scaled = g / scale  # g' at θ' = 10 θ

    def first_step(name, g):  # from zero state, the default hyper-parameters
        eta = float(np.float32(unit_rules[name]["learning_rate"]))
        if name == "GradientDescent":
            return eta * g
        if name == "Adagrad":
            return eta * g / np.sqrt(g**2 + 1e-8)
        if name == "RMSprop":
            return eta * g / np.sqrt(0.1 * g**2 + 1e-8)
        if name == "Adam":
            return eta * np.sqrt(0.001) * g / np.sqrt(0.001 * g**2 + 1e-8)
        if name == "Adadelta":
            return eta * np.sqrt(1e-6) * g / np.sqrt(0.05 * g**2 + 1e-6)
        raise AssertionError(name)

    units = adaptive.results["units"]
    for name in unit_rules:
        expected = np.linalg.norm(first_step(name, g_scaled)) / np.linalg.norm(
            first_step(name, g)
        )
        assert units[name]["ratio"][0] == pytest.approx(expected, rel=1e-6), name
        assert adaptive.results["unit_rows"][name]["first"] == units[name]["ratio"][0]
    assert units["GradientDescent"]["ratio"][0] == pytest.approx(0.1, rel=1e-9)


def test_bias_correction_ratio_is_the_closed_form_at_step_1(adaptive, adaptive_code):
    b1, b2 = adaptive_code["BETA_1"], adaptive_code["BETA_2"]
    # Same weights, same first batch: the two runs share m and v at step 1.
    measured = floats(adaptive.results["measured_ratio"])
    assert measured[:, 0] == pytest.approx((1 - b1) / np.sqrt(1 - b2), rel=1e-4)
    assert adaptive.results["m_ratio"] == pytest.approx(1 - b1, rel=1e-4)
    assert adaptive.results["v_ratio"] == pytest.approx(np.sqrt(1 - b2), rel=1e-4)
    # The runs' own steps give the ratio the table shows (divided in float32 there,
    # where the steps are float32: one rounding, 2⁻²⁴ relative).
    for k, run in enumerate(adaptive.results["bias"]):
        np.testing.assert_allclose(
            measured[k],
            floats(run["uncorrected"]["median_step"])
            / floats(run["corrected"]["median_step"]),
            rtol=2.0**-24,
        )
    shown = "\n".join(adaptive.markdown_outputs())
    assert "does not reproduce" in shown


def test_cancel_bias_correction_schedule(adaptive_code):
    schedule = adaptive_code["CancelBiasCorrection"](1e-3, 0.9, 0.999)
    for step in (0, 9, 49):
        t = step + 1
        # Computed in float32, as Keras computes schedules: 1 − 0.999ᵗ keeps about
        # four digits at t = 1.
        assert float(schedule(step)) == pytest.approx(
            1e-3 * (1 - 0.9**t) / math.sqrt(1 - 0.999**t), rel=1e-4
        )


def test_epsilon_placement_matches_the_closed_forms(adaptive, adaptive_code):
    g = adaptive_code["GRADIENT_MAGNITUDES"]
    eps = adaptive_code["RULE_EPSILON"]
    epsilon, knees = adaptive.results["epsilon"], adaptive.results["knees"]
    # A constant gradient: m_t = (1 − β1ᵗ) g, v_t = (1 − β2ᵗ) g², G_t = (1 − ρᵗ) g².
    for t, step in epsilon["Adam"]["inside"].items():
        b2 = 1 - 0.999 ** int(t)
        np.testing.assert_allclose(
            step, np.sqrt(b2) * g / np.sqrt(b2 * g**2 + eps), rtol=1e-6
        )
    for step in epsilon["Adam"]["outside"].values():
        np.testing.assert_allclose(step, g / (g + eps), rtol=1e-6)
    for t, step in epsilon["RMSprop"]["inside"].items():
        r = 1 - 0.9 ** int(t)
        np.testing.assert_allclose(step, g / np.sqrt(r * g**2 + eps), rtol=1e-6)
    for t, step in epsilon["RMSprop"]["outside"].items():
        r = 1 - 0.9 ** int(t)
        np.testing.assert_allclose(step, g / (np.sqrt(r) * g + eps), rtol=1e-6)
    for name in ("Adam", "RMSprop"):
        for t, knee in knees[name]["outside"].items():
            assert knee < knees[name]["inside"][t]

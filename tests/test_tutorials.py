"""The tutorials' smoke runs: each writes its figures and shows what its docstring claims.

Each tutorial's `--quick` mode runs once per module, in-process (so TensorFlow is
imported once), into a temporary folder; the tests then check the files it wrote and
the numbers it returned against independent references (closed forms, float64 NumPy
implementations of the notes' equations) and against the claims it makes.
"""

import contextlib
import importlib.util
import io
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        keras.backend.backend() != "tensorflow",
        reason="the tutorials train with tf.function / TensorFlow",
    ),
]

TUTORIALS = Path(__file__).resolve().parent.parent / "tutorials"
# Every numbered tutorial on disk: the option checks below run over all of them.
EVERY_NUMBERED = sorted(path.stem for path in TUTORIALS.glob("[0-9][0-9]_*.py"))


def load(name: str):
    """Imports tutorials/<name>.py as a module (the numbered names are not
    identifiers), with tutorials/ on the path for its `_common`."""
    if str(TUTORIALS) not in sys.path:
        sys.path.insert(0, str(TUTORIALS))
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, TUTORIALS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while defined
    spec.loader.exec_module(module)
    return module


def quick_run(name: str, tmp_path_factory):
    module = load(name)
    out = tmp_path_factory.mktemp(name)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        result = module.main(["--quick", "--out", str(out)])
    return module, out, result, printed.getvalue()


# The numbered tutorials ----------------------------------------------------------

NUMBERED = {
    "01_batch_size_modes": ("01_batch_size_modes.png", "01_escape.png"),
    "02_optimizer_paths": (
        "02_optimizer_paths.png",
        "02_convergence.png",
        "02_momentum_vs_nesterov.png",
        "02_momentum_beta.png",
    ),
    "03_adaptive_learning_rates": (
        "03_effective_step_size.png",
        "03_units.png",
        "03_bias_correction.png",
        "03_epsilon.png",
    ),
    "09_critical_batch_size": ("09_critical_batch.png", "09_pareto.png"),
}


def finite_numbers(value):
    """Every float inside a result (dicts, lists, arrays, Spreads), flattened."""
    if isinstance(value, dict):
        return [x for v in value.values() for x in finite_numbers(v)]
    if isinstance(value, (list, tuple)):
        return [x for v in value for x in finite_numbers(v)]
    if isinstance(value, np.ndarray) and value.dtype.kind == "f":
        return list(value.ravel())
    if hasattr(value, "mean") and hasattr(value, "std") and hasattr(value, "n"):
        return [value.mean, value.std]
    if isinstance(value, float):
        return [value]
    return []


@pytest.mark.parametrize("name", sorted(NUMBERED))
def test_numbered_writes_figures_and_summary(numbered, name):
    module, out, result, printed = numbered(name)
    summary = (out / f"{name}.md").read_text(encoding="utf-8")
    assert summary.startswith(f"# {name[:2]} — ")
    for figure in NUMBERED[name]:
        data = (out / figure).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5_000
        assert f"]({figure})" in summary  # the summary shows each figure
    assert "Run in " in summary and "CPU cores" in summary
    assert f"{out / name}.md" in printed
    assert module.__doc__ and "--quick" in module.__doc__


def test_numbered_results_are_finite(numbered):
    # 01's times to the target may be nan (not reached in the smoke run's budget):
    # everything else must be finite.
    _, _, r01, _ = numbered("01_batch_size_modes")
    for runs in r01["results"].values():
        for run in runs:
            for key in ("loss", "seconds", "steps", "epochs"):
                assert np.all(np.isfinite(run[key])), key
            assert np.all(np.diff(run["seconds"]) >= 0)
    _, _, r02, _ = numbered("02_optimizer_paths")
    assert all(np.isfinite(v["final_gap"]) for v in r02["chosen"].values())
    _, _, r03, _ = numbered("03_adaptive_learning_rates")
    for key in ("decay_rows", "unit_rows", "bias_rows", "knees"):
        numbers = finite_numbers(r03[key])
        assert numbers and np.all(np.isfinite(numbers)), key


# Bad options: one line on stderr, exit status 2 ----------------------------------


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--seeds", "0"], "argument --seeds: expected a positive integer"),
        (["--seeds", "two"], "argument --seeds: expected a positive integer"),
        (["--quick", "--bogus"], "unrecognized arguments: --bogus"),
    ],
)
@pytest.mark.parametrize("name", EVERY_NUMBERED)
def test_bad_options_one_line_exit_2(name, argv, message, capsys):
    module = load(name)
    with pytest.raises(SystemExit) as exit_:
        module.main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(
        f"python tutorials/{name}.py: error:"
    )
    assert message in err


def test_unwritable_out_is_one_line_exit_2(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    module = load("02_optimizer_paths")
    with pytest.raises(SystemExit) as exit_:
        module.main(["--quick", "--out", str(blocker)])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "exists and is not a folder" in err
    assert blocker.read_text() == "not a folder"


def run_02_from_the_shell(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(TUTORIALS / "02_optimizer_paths.py"), *argv],
        capture_output=True,
        text=True,
        env={**os.environ, "KERAS_BACKEND": "tensorflow"},
        timeout=120,
    )


def test_bad_option_from_the_shell_is_one_line():
    # The real entry point: a bad option fails before TensorFlow is imported.
    done = run_02_from_the_shell("--seeds", "-1")
    assert done.returncode == 2
    assert done.stdout == ""
    assert re.fullmatch(
        r"python tutorials/02_optimizer_paths\.py: error: argument --seeds: "
        r"expected a positive integer, received '-1'\n",
        done.stderr,
    )


def test_unwritable_out_from_the_shell_is_one_line(tmp_path):
    # Found after TensorFlow is imported: its import-time log lines (written by its
    # C++ runtime, whatever TF_CPP_MIN_LOG_LEVEL says) must not reach stderr.
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    done = run_02_from_the_shell("--quick", "--out", str(blocker))
    assert done.returncode == 2
    assert done.stdout == ""
    assert re.fullmatch(
        r"python tutorials/02_optimizer_paths\.py: error: output folder .*: exists "
        r"and is not a folder\n",
        done.stderr,
    )


def test_seeds_defaults():
    module = load("01_batch_size_modes")
    common = sys.modules["_common"]
    args = common.parse_options([], module.__file__, module.__doc__, default_seeds=3)
    assert (args.seeds, args.quick, args.out) == (3, False, common.DEFAULT_OUT)
    args = common.parse_options(
        ["--quick"], module.__file__, None, default_seeds=3, quick_seeds=1
    )
    assert args.seeds == 1 and args.name == "01_batch_size_modes"
    assert (
        common.parse_options(
            ["--quick", "--seeds", "4"], module.__file__, None, default_seeds=3
        ).seeds
        == 4
    )


def test_common_spread_and_interval():
    load("01_batch_size_modes")
    common = sys.modules["_common"]
    s = common.spread([1.0, 2.0, 4.0])
    assert (s.mean, s.low, s.high, s.n) == (7 / 3, 1.0, 4.0, 3)
    assert s.std == pytest.approx(
        math.sqrt(((1 - 7 / 3) ** 2 + (2 - 7 / 3) ** 2 + (4 - 7 / 3) ** 2) / 2),
        rel=1e-15,
    )
    assert str(common.spread([0.5])) == "0.5"
    # Wilson's interval for 0 of n is [0, z²/(n + z²)]; for n of n it mirrors.
    low, high = common.binomial_interval(0, 40)
    assert low == 0.0 and high == pytest.approx(1.96**2 / (40 + 1.96**2), rel=1e-12)
    low, high = common.binomial_interval(40, 40)
    assert high == 1.0 and low == pytest.approx(40 / (40 + 1.96**2), rel=1e-12)
    with pytest.raises(ValueError, match="empty"):
        common.spread([])


# 01 ------------------------------------------------------------------------------


def test_full_batch_escape_rows_are_plain_gradient_descent(numbered):
    module, _, result, _ = numbered("01_batch_size_modes")
    escaped = result["escape"]
    runs, steps = escaped["runs"], escaped["steps"]
    path = escaped["path"][:, :runs]  # the first block of rows: the full gradient
    # Independent reference: GD with Keras' cosine decay, written out in NumPy.
    theta = path[0].copy()
    for t in range(steps):
        rate = np.float32(
            module.ESCAPE_LEARNING_RATE * 0.5 * (1 + np.cos(np.pi * t / steps))
        )
        x, y = theta[:, 0], theta[:, 1]
        theta = theta - float(rate) * np.stack([4 * x * (x**2 - 1) + 0.3, y], axis=1)
    np.testing.assert_allclose(path[-1], theta, rtol=1e-5, atol=1e-7)


def test_noise_lets_small_batches_escape(numbered):
    result = numbered("01_batch_size_modes")[2]
    rows = {row["batch"]: row for row in result["escape"]["rows"]}
    # The full gradient cannot cross the ridge from the poor basin; batch 1 does.
    assert rows["full"]["crossed"] == rows["full"]["ended"] == 0
    assert rows[1]["crossed"] > 0
    assert rows[1]["crossed"] >= rows[64]["crossed"]
    assert len(result["claims"]) == 3


def test_batch_modes_train_and_time(numbered):
    result = numbered("01_batch_size_modes")[2]
    for runs in result["results"].values():
        for run in runs:
            assert run["loss"][-1] < run["loss"][0]  # every mode learns something
            assert run["steps"][-1] == run["steps_per_epoch"] * run["epochs"][-1]
            assert run["ms_per_step"] > 0
    rows = result["rows"]
    # One epoch of batch 1 is many more updates than one of batch 32.
    assert rows[1]["seconds_per_epoch"].mean > rows[32]["seconds_per_epoch"].mean


# 02 ------------------------------------------------------------------------------


def test_test_function_gradients_match_finite_differences():
    module = load("02_optimizer_paths")
    rng = np.random.default_rng(0)
    for function in module.FUNCTIONS:
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


def test_nesterov_forms_give_the_same_iterates(numbered):
    module, _, result, _ = numbered("02_optimizer_paths")
    beta = module.MOMENTUM
    start = np.array([f.start for f in module.FUNCTIONS])
    checked = 0
    for (rule, rate), phi in result["runs"].items():
        if rule != "NesterovMomentum":
            continue
        # The notes' look-ahead form, written out here independently, in float64, with
        # η as Keras stores it (a float32 variable).
        eta = float(np.float32(rate))
        theta, a = start.copy(), np.zeros_like(start)
        # The runs at the larger η diverge (to 1e80 on Rosenbrock): no warnings.
        with np.errstate(over="ignore", invalid="ignore"):
            for t in range(1, len(phi)):
                a = beta * a + module.stacked_gradient(theta - eta * beta * a)
                theta = theta - eta * a
                lookahead = theta - eta * beta * a
                bounded = np.abs(lookahead) < 1e6  # not the runs that diverge
                np.testing.assert_allclose(
                    phi[t][bounded], lookahead[bounded], rtol=1e-12, atol=1e-12
                )
        checked += 1
    assert checked == 2
    # And the tutorial's own check, which it reports, agrees.
    assert max(max(v) for v in result["nesterov"].values()) < 1e-12


def test_gradient_descent_on_the_quadratic_is_the_closed_form(numbered):
    module, _, result, _ = numbered("02_optimizer_paths")
    for (rule, rate), path in result["runs"].items():
        if rule != "GradientDescent":
            continue
        eta = float(np.float32(rate))
        t = np.arange(len(path))
        expected = np.stack([-4.0 * (1 - eta) ** t, 1.0 * (1 - 50 * eta) ** t], axis=1)
        np.testing.assert_allclose(path[:, 0], expected, rtol=1e-12, atol=1e-15)


def test_nesterov_swings_less_past_the_minimum(numbered):
    overshoots = numbered("02_optimizer_paths")[2]["overshoots"]
    for beta in (0.9, 0.95):
        rows = overshoots[beta]
        assert 0 < rows["NesterovMomentum"]["overshoot"] < rows["Momentum"]["overshoot"]


def test_chosen_learning_rate_is_the_best_of_the_grid(numbered):
    module, _, result, _ = numbered("02_optimizer_paths")
    for (rule, name), best in result["chosen"].items():
        k = [f.name for f in module.FUNCTIONS].index(name)
        finals = [
            module.gaps(path)[-1, k]
            for (r, _), path in result["runs"].items()
            if r == rule
        ]
        finals = [g for g in finals if np.isfinite(g)]
        if best["steps"] is None:
            assert best["final_gap"] == min(finals)


def test_heavy_ball_contraction_is_the_companion_matrix_spectral_radius():
    module = load("02_optimizer_paths")
    rng = np.random.default_rng(0)
    for eta, beta in zip(rng.uniform(0.001, 0.08, 20), rng.uniform(0.0, 0.99, 20)):
        # e_{t+1} = (1 + β − ηλ) e_t − β e_{t−1}: the companion matrix per curvature.
        radius = max(
            np.max(np.abs(np.linalg.eigvals([[1 + beta - eta * lam, -beta], [1, 0]])))
            for lam in (1.0, 50.0)
        )
        assert module.heavy_ball_contraction(eta, beta) == pytest.approx(
            radius, rel=1e-10
        )
    # Polyak's optimum: η* = 4/(1 + √50)², β* = ((√50 − 1)/(√50 + 1))², rate √β*.
    # Both curvatures have a double root there, which np.roots finds to about √ε.
    root = math.sqrt(50.0)
    assert module.OPTIMAL_RATE == pytest.approx(4 / (1 + root) ** 2, rel=1e-15)
    assert module.OPTIMAL_BETA == pytest.approx(
        ((root - 1) / (root + 1)) ** 2, rel=1e-15
    )
    assert module.heavy_ball_contraction(
        module.OPTIMAL_RATE, module.OPTIMAL_BETA
    ) == pytest.approx((root - 1) / (root + 1), rel=1e-6)


def test_momentum_sweep_paths_are_the_heavy_ball_in_numpy(numbered):
    module, _, result, _ = numbered("02_optimizer_paths")
    sweep = result["sweep"]
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
        np.testing.assert_allclose(row["path"], np.array(path), rtol=1e-10, atol=1e-14)
        gap = 0.5 * (np.array(path)[:, 0] ** 2 + 50 * np.array(path)[:, 1] ** 2)
        above = np.flatnonzero(gap >= module.TOLERANCE)
        assert row["steps"] == above[-1] + 1


def test_momentum_sweep_finds_the_closed_form_beta(numbered):
    module, _, result, _ = numbered("02_optimizer_paths")
    best = module.best_beta(result["sweep"])
    # The quick sweep's β are 0, 0.55, 0.6 and 0.9; β* = 0.566 lies between the two
    # middle ones, and 0.9 is far slower.
    assert best["beta"] in (0.55, 0.6)
    at_09 = next(r for r in result["sweep"]["rows"] if r["beta"] == 0.9)
    assert at_09["steps"] is None or at_09["steps"] > 2 * best["steps"]


def test_rotation_leaves_gradient_descent_unchanged_and_changes_adagrad(numbered):
    module, _, result, _ = numbered("02_optimizer_paths")
    names = [f.name for f in module.FUNCTIONS]
    aligned, rotated = names.index("quadratic"), names.index("rotated quadratic")
    rotation = np.array([[1.0, -1.0], [1.0, 1.0]]) / math.sqrt(2.0)
    differences = {}
    for (rule, _rate), path in result["runs"].items():
        turned = path[:, aligned] @ rotation.T  # R θ, row by row
        bounded = np.all(np.abs(turned) < 1e6, axis=1)  # not the runs that diverge
        difference = np.max(
            np.abs(path[bounded, rotated] - turned[bounded])
            / (1.0 + np.abs(turned[bounded]))
        )
        differences.setdefault(rule, []).append(difference)
    for rule in ("GradientDescent", "Momentum", "NesterovMomentum"):
        assert max(differences[rule]) < 1e-12
    assert min(differences["Adagrad"]) > 1e-3


# 03 ------------------------------------------------------------------------------


def test_adagrad_step_size_only_falls(numbered):
    module, _, result, _ = numbered("03_adaptive_learning_rates")
    history = result["histories"]["Adagrad"][0]
    assert np.all(np.diff(history[module.KEYS["median"]]) < 0)
    for key in ("p5", "p95"):  # G only grows, so every percentile can only fall
        assert np.all(np.diff(history[module.KEYS[key]]) <= 0)
    rows = result["decay_rows"]
    assert rows["Adagrad"]["ratio"].mean < rows["RMSprop"]["ratio"].mean
    assert rows["Adagrad"]["ratio"].mean < rows["Adam"]["ratio"].mean


def test_first_step_ratios_in_two_units_match_hand_computed_steps(numbered):
    module, _, result, _ = numbered("03_adaptive_learning_rates")
    _, gradient, start = module.least_squares(0)
    scale = module.SCALE
    g = gradient(start)[0]
    g_scaled = g / scale  # g' at θ' = 10 θ

    def first_step(name, g):  # from zero state, the default hyper-parameters
        eta = float(np.float32(module.UNIT_RULES[name]["learning_rate"]))
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

    for name in module.UNIT_RULES:
        expected = np.linalg.norm(first_step(name, g_scaled)) / np.linalg.norm(
            first_step(name, g)
        )
        ratio = result["units"][name]["ratio"][0]
        assert ratio == pytest.approx(expected, rel=1e-6), name
    assert result["units"]["GradientDescent"]["ratio"][0] == pytest.approx(
        0.1, rel=1e-9
    )


def test_bias_correction_ratio_is_the_closed_form_at_step_1(numbered):
    module, _, result, _ = numbered("03_adaptive_learning_rates")
    b1, b2 = module.BETA_1, module.BETA_2
    # Same weights, same first batch: the two runs share m and v at step 1.
    assert result["measured_ratio"][:, 0] == pytest.approx(
        (1 - b1) / np.sqrt(1 - b2), rel=1e-4
    )
    assert result["m_ratio"] == pytest.approx(1 - b1, rel=1e-4)
    assert result["v_ratio"] == pytest.approx(np.sqrt(1 - b2), rel=1e-4)


def test_cancel_bias_correction_schedule():
    module = load("03_adaptive_learning_rates")
    schedule = module.CancelBiasCorrection(1e-3, 0.9, 0.999)
    for step in (0, 9, 49):
        t = step + 1
        # Computed in float32, as Keras computes schedules: 1 − 0.999ᵗ keeps about
        # four digits at t = 1.
        assert float(schedule(step)) == pytest.approx(
            1e-3 * (1 - 0.9**t) / math.sqrt(1 - 0.999**t), rel=1e-4
        )


def test_epsilon_placement_matches_the_closed_forms(numbered):
    module, _, result, _ = numbered("03_adaptive_learning_rates")
    g, eps = module.GRADIENT_MAGNITUDES, module.RULE_EPSILON
    # A constant gradient: m_t = (1 − β1ᵗ) g, v_t = (1 − β2ᵗ) g², G_t = (1 − ρᵗ) g².
    for t, step in result["epsilon"]["Adam", True].items():
        b2 = 1 - 0.999**t
        np.testing.assert_allclose(
            step, np.sqrt(b2) * g / np.sqrt(b2 * g**2 + eps), rtol=1e-6
        )
    for step in result["epsilon"]["Adam", False].values():
        np.testing.assert_allclose(step, g / (g + eps), rtol=1e-6)
    for t, step in result["epsilon"]["RMSprop", True].items():
        r = 1 - 0.9**t
        np.testing.assert_allclose(step, g / np.sqrt(r * g**2 + eps), rtol=1e-6)
    for t, step in result["epsilon"]["RMSprop", False].items():
        r = 1 - 0.9**t
        np.testing.assert_allclose(step, g / (np.sqrt(r) * g + eps), rtol=1e-6)
    for name in ("Adam", "RMSprop"):
        for t, knee in result["knees"][name, False].items():
            assert knee < result["knees"][name, True][t]


# 09 ------------------------------------------------------------------------------


def test_critical_batch_tutorial_fit_is_the_hyperbola(numbered):
    _, out, result, _ = numbered("09_critical_batch_size")
    experiment = result["result"]
    fit = experiment.fit
    sizes = np.array([8.0, 64.0, 512.0, 3.0, 5000.0])
    s, e = fit.steps(sizes), fit.examples(sizes)
    # (S/S_min − 1)(E/E_min − 1) = (B_crit/B)(B/B_crit) = 1, and E = B S.
    np.testing.assert_allclose(
        (s / fit.min_steps - 1) * (e / fit.min_examples - 1), 1.0, rtol=1e-12
    )
    np.testing.assert_allclose(e, sizes * s, rtol=1e-12)
    summary = (out / "09_critical_batch_size.md").read_text(encoding="utf-8")
    assert f"B_crit = {fit.critical_batch_size:.1f}" in summary
    for batch in experiment.batches:
        assert batch.runs and all(run.steps for run in batch.runs)

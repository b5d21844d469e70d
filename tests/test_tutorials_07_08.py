"""Tutorials 07 (dropout) and 08 (normalization): their quick runs and identities.

Each notebook runs once per module under papermill (`QUICK = True`) into a temporary
folder; the tests check the figures it wrote and showed, the JSON of its numbers, the
identities each tutorial measures (inverted dropout's kept values and expectation,
weight scaling as the exact geometric mean of one softmax layer's sub-networks, BN's
output β and moving variance momentumᵏ on batches of one, a zero gradient reaching the
kernel before BN), the tables it showed against scipy's Student-t intervals of the
per-seed numbers, and the notebooks' own functions against hand-computed or
closed-form values.
"""

import math

import keras
import numpy as np
import pytest
from notebooks import definitions, execute, tensorflow_only
from scipy import stats

pytestmark = [pytest.mark.slow, tensorflow_only]

FIGURES = {
    "07_dropout": ("07_mc_vs_weight_scaling.png", "07_coadaptation.png"),
    "08_normalization": (
        "08_train_vs_inference.png",
        "08_santurkar.png",
        "08_batch_size.png",
    ),
}
# The notes' section each notebook opens with.
SECTIONS = {
    "07_dropout": 'Dropout" (드롭아웃)',
    "08_normalization": 'Batch Normalization" (배치 정규화)',
}
# Where a quick run may write null (JSON's NaN or "none"): a k not reached in 8
# passes, noisy BN's landscape (not measured: its loss is random at fixed weights),
# the loss before the last epoch of a 1-epoch run.
NULLS = {
    "07_dropout": {
        "rows.first_k_within",
        "rows.first_k_accuracy",
        "rows.first_k_loss",
    },
    "08_normalization": {
        "santurkar.*.noisy batch.landscape",
        "rows.baseline_loss.before_last",
    },
}


@pytest.fixture(scope="module")
def dropout(tmp_path_factory):
    return execute("07_dropout", tmp_path_factory.mktemp("07_dropout"))


@pytest.fixture(scope="module")
def normalization(tmp_path_factory):
    return execute("08_normalization", tmp_path_factory.mktemp("08_normalization"))


@pytest.fixture(scope="module")
def dropout_code():
    return definitions("07_dropout")


@pytest.fixture(scope="module")
def normalization_code():
    return definitions("08_normalization")


def numbers_and_nulls(value, path=""):
    """Every number inside a JSON value, and the paths (list indices as "*") of its
    nulls."""
    if value is None:
        return [], {path}
    if isinstance(value, bool):
        return [], set()
    if isinstance(value, (int, float)):
        return [value], set()
    items = (
        value.items()
        if isinstance(value, dict)
        else (("*", v) for v in value)
        if isinstance(value, list)
        else ()
    )
    numbers, nulls = [], set()
    for key, item in items:
        n, z = numbers_and_nulls(item, f"{path}.{key}" if path else key)
        numbers += n
        nulls |= z
    return numbers, nulls


def t_cell(values) -> str:
    """A table cell "m [lo, hi]": the mean and scipy's 95 % Student-t interval."""
    low = high = np.mean(values)  # equal values: scipy's interval is NaN, not a point
    if np.ptp(values) > 0:
        low, high = stats.t.interval(
            0.95, len(values) - 1, loc=np.mean(values), scale=stats.sem(values)
        )
    return f"{np.mean(values):.4g} [{low:.3g}, {high:.3g}]"


@pytest.mark.parametrize("fixture", ["dropout", "normalization"])
def test_writes_and_shows_figures_numbers_and_verdicts(fixture, request):
    executed = request.getfixturevalue(fixture)
    name = executed.name
    assert executed.notebook.cells[0].source.startswith(f"# {name[:2]} — ")
    assert SECTIONS[name] in executed.notebook.cells[0].source
    executed.assert_shows(FIGURES[name], min_bytes=10_000)
    results = executed.results
    assert results["seeds"] == 2
    numbers, nulls = numbers_and_nulls(results)
    assert len(numbers) > 50 and np.all(np.isfinite(numbers))
    assert nulls <= NULLS[name]
    verdicts = results["verdicts"]
    assert verdicts and all(isinstance(v, str) and v for v in verdicts)
    shown = "\n".join(executed.markdown_outputs())
    for verdict in verdicts:
        assert verdict in shown


# 07 ------------------------------------------------------------------------------


def test_inverted_dropout_kept_values_and_expectation(dropout):
    identity = dropout.results["identity"]
    # x/(1 − 0.5) = 2x is exact in binary floating point.
    assert identity["kept_relative_error"] == 0.0
    # The kept share's Wilson interval, against scipy's.
    trials = identity["draws"] * 64
    kept = round(identity["kept_share"] * trials)
    assert kept / trials == identity["kept_share"]
    expected = stats.binomtest(kept, trials).proportion_ci(0.95, method="wilson")
    np.testing.assert_allclose(
        identity["kept_interval"], (expected.low, expected.high), rtol=1e-9
    )
    low, high = identity["kept_interval"]
    assert low <= 0.5 <= high
    # 64 means over the draws, each within a few standard errors √(p/(1−p))·x/√k.
    assert identity["mean_max_z"] < 4.5
    assert 0.6 < identity["mean_rms_z"] < 1.4
    assert identity["inference_is_identity"]


def test_weight_scaling_is_the_geometric_mean_of_all_sub_networks(dropout):
    geometric = dropout.results["geometric"]
    assert geometric["masks"] == 2**12
    assert geometric["weights_sum"] == pytest.approx(1.0, abs=1e-12)
    # Keras' float32 inference output against the float64 enumeration.
    assert geometric["geometric_vs_inference"] < 1e-5
    # The arithmetic mean (what MC averaging estimates) is another prediction.
    assert (
        geometric["arithmetic_vs_inference"] > 100 * geometric["geometric_vs_inference"]
    )
    assert geometric["geometric"][0] == geometric["inference"][0]


def test_monte_carlo_table_is_the_seeds_t_intervals(dropout):
    results = dropout.results
    runs, rows = results["runs"], results["rows"]
    counts = runs[0]["counts"]
    assert counts == [1, 2, 4, 8]
    shown = "\n".join(dropout.markdown_outputs())
    scaled = [run["dropout"]["weight_scaled"][0] for run in runs]
    for i, k in enumerate(counts):
        accuracies = [run["dropout"]["monte_carlo"][i][0] for run in runs]
        assert rows["mc_accuracy"][i]["values"] == accuracies
        row = next(line for line in shown.splitlines() if line.startswith(f"| {k} |"))
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        assert cells[1] == t_cell(accuracies)
        assert cells[2] == t_cell(np.subtract(accuracies, scaled))


def test_monte_carlo_curve_groups_disjoint_passes(dropout_code):
    labels = np.array([0, 1])
    # Four passes over two samples; pass i predicts class (i % 2) for both.
    passes = np.zeros((4, 2, 2))
    for i in range(4):
        passes[i, :, i % 2] = 0.9
        passes[i, :, 1 - i % 2] = 0.1
    curve = dropout_code["monte_carlo_curve"](passes, labels, [1, 2, 4])
    # k = 1: every pass is right on one of the two samples.
    assert curve[0, 0] == 0.5
    assert curve[0, 1] == pytest.approx(-(math.log(0.9) + math.log(0.1)) / 2, 1e-12)
    # k = 2 and 4: groups (0, 1), (2, 3) and (0..3) average to 0.5 / 0.5.
    for row in curve[1:]:
        assert row[1] == pytest.approx(-math.log(0.5), 1e-12)


def test_coadaptation_measures_on_hand_made_activations(dropout_code):
    t = np.arange(8.0)
    activations = np.stack([t, 2 * t + 1, 7 - t, np.zeros(8)], axis=1)
    measured = dropout_code["coadaptation"](activations)
    # Three live units, all pairwise |correlation| 1; one dead unit.
    assert measured["mean_abs_correlation"] == pytest.approx(1.0, abs=1e-12)
    assert measured["dead_share"] == 0.25
    # Zeros: t[0], 7 − t at t = 7, and the dead column's 8 of 32 entries.
    assert measured["zero_share"] == (1 + 1 + 8) / 32
    assert sorted(np.round(measured["correlations"], 12)) == [-1.0, -1.0, 1.0]


def test_dropout_networks_share_their_initial_weights(dropout_code):
    build_network = dropout_code["build_network"]
    with_dropout = build_network(16, (0.2, 0.5), seed=3)
    without = build_network(16, (0.0, 0.0), seed=3)
    for a, b in zip(with_dropout.get_weights(), without.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    x = np.random.default_rng(0).random((5, 64)).astype("float32")
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(with_dropout(x, training=False)),
        keras.ops.convert_to_numpy(without(x, training=True)),
    )


# 08 ------------------------------------------------------------------------------


def test_batch_of_one_outputs_beta(normalization):
    layer = normalization.results["layer"]
    inputs, outputs, beta = (
        np.asarray(layer[key]) for key in ("inputs", "outputs", "beta")
    )
    assert layer["max_difference_from_beta"] <= layer["rounding_bound"] < 1e-3
    # Each of the calls had a different input, and every output row is β.
    assert np.ptp(inputs, axis=0).min() > 0.1
    np.testing.assert_allclose(
        outputs,
        np.broadcast_to(beta, outputs.shape),
        rtol=0,
        atol=layer["rounding_bound"],
    )
    # The batch variance is 0, so k calls leave momentumᵏ of the initial 1.
    np.testing.assert_allclose(
        layer["moving_variance"], 0.99 ** layer["calls"], rtol=1e-6, atol=0
    )


def test_batch_of_one_training_learns_nothing_from_the_inputs(normalization):
    single = normalization.results["single"]
    assert single["first_kernel_gradient"] <= 1e-7
    assert single["output_bias_gradient"] > 1e-3
    assert single["output_spread_over_inputs"] < 1e-5
    assert single["moving_variance_mean"] == pytest.approx(
        0.99 ** single["steps"], rel=1e-5
    )
    assert single["train_loss_last"] > single["label_entropy"] - 0.2


def test_moving_mean_starts_momentum_away_from_the_exact_mean(
    normalization, normalization_code
):
    # After one step the moving mean is (1 − m)·(batch mean): its relative error
    # against the full-data mean is about m.
    for momentum in normalization_code["MOMENTA"]:
        for seed in normalization.results["moving"]:
            run = np.asarray(seed[str(momentum)])
            assert run[0, 0] == 1
            assert run[0, 4] == pytest.approx(momentum, abs=0.05)
            assert np.all((run[:, 1:4] >= 0) & (run[:, 1:4] <= 1))


def test_landscape_on_a_quadratic_matches_the_closed_form(normalization_code):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 3)).astype("float32")
    y = rng.normal(size=(32, 1)).astype("float32")
    inputs = keras.Input(shape=(3,))
    model = keras.Model(inputs, keras.layers.Dense(1, use_bias=False)(inputs))
    w = np.asarray(model.get_weights()[0], np.float64)
    x64, y64 = x.astype(np.float64), y.astype(np.float64)
    # L(w) = mean((x w − y)²): g = 2 xᵀ(x w − y)/n, H = 2 xᵀx/n, and along −s g
    # L(s) = L(0) − s‖g‖² + ½ s² gᵀ H g, Δg = −s H g.
    loss0 = float(np.mean((x64 @ w - y64) ** 2))
    g = 2 * x64.T @ (x64 @ w - y64) / len(x)
    hessian = 2 * x64.T @ x64 / len(x)
    step_sizes = normalization_code["STEP_SIZES"]
    sizes = np.array((0.0, *step_sizes))
    losses = (
        loss0 - sizes * (g.T @ g).item() + 0.5 * sizes**2 * (g.T @ hessian @ g).item()
    )
    hg = float(np.linalg.norm(hessian @ g))
    expected = (np.ptp(losses), max(step_sizes) * hg, hg / np.linalg.norm(g))
    measured = normalization_code["landscape"](model, x, y, loss="mean_squared_error")
    np.testing.assert_allclose(measured, expected, rtol=1e-4)
    np.testing.assert_array_equal(model.get_weights()[0], w.astype("float32"))


def test_non_stationary_noise(normalization_code):
    layer = normalization_code["NonStationaryNoise"](seed=0)
    x = np.full((4096, 8), 2.0, dtype="float32")
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer(x)), x)
    first, second = (
        keras.ops.convert_to_numpy(layer(x, training=True)) for _ in range(2)
    )
    for y in (first, second):
        # y = a·2 + m + σ·ε with a ∈ [0.5, 1.5], m ∈ [−1, 1], σ ∈ [0, 0.5].
        mean, std = y.mean(axis=0), y.std(axis=0)
        assert np.all((mean > 2 * 0.5 - 1 - 0.05) & (mean < 2 * 1.5 + 1 + 0.05))
        assert np.all(std < 0.5 * 1.05)
    assert np.max(np.abs(first.mean(axis=0) - second.mean(axis=0))) > 0.1


def test_model_pool_restart_equals_a_fresh_model(normalization_code):
    dense_network = normalization_code["dense_network"]
    pool = normalization_code["ModelPool"]()
    rng = np.random.default_rng(1)
    x = rng.random((64, 64)).astype("float32")
    y = rng.integers(0, 10, 64)

    def train(model):
        for i in range(4):
            model.train_on_batch(x[16 * i : 16 * (i + 1)], y[16 * i : 16 * (i + 1)])
        return model.get_weights()

    train(pool.restart("m", lambda: dense_network(2, "batch", 0))[0])
    restarted = train(pool.restart("m", lambda: dense_network(2, "batch", 5))[0])
    fresh = train(dense_network(2, "batch", 5)[0])
    for a, b in zip(restarted, fresh, strict=True):
        np.testing.assert_array_equal(a, b)


def test_batch_order_covers_every_sample_once_per_epoch(normalization_code):
    order = normalization_code["batch_order"](10, 3, 6, seed=0)  # 3 batches an epoch
    assert order.shape == (6, 3)
    for epoch in (order[:3], order[3:]):
        assert len(set(epoch.ravel())) == 9


def test_normalization_variants_ran(normalization, normalization_code):
    settings = normalization_code["SETTINGS"][True]
    sizes = settings["batch_sizes"]
    kinds = normalization_code["KINDS"]
    largest = max(sizes)
    for seed in normalization.results["variants"]:
        for budget in ("epochs", "steps"):
            assert set(seed[budget]) == set(kinds)
            for kind in kinds:
                assert set(seed[budget][kind]) == {str(b) for b in sizes}
                assert all(0.0 <= v <= 1.0 for v in seed[budget][kind].values())
        # Equal steps: the largest batch's whole budget, so its two numbers coincide.
        assert seed["equal_steps"] == (
            settings["variant_samples"] // largest * settings["variant_epochs"]
        )
        for kind in kinds:
            assert (
                seed["steps"][kind][str(largest)] == seed["epochs"][kind][str(largest)]
            )


def test_variant_tables_are_the_seeds_t_intervals(normalization, normalization_code):
    sizes = normalization_code["SETTINGS"][True]["batch_sizes"]
    variants = normalization.results["variants"]
    shown = "\n".join(normalization.markdown_outputs())
    # The "Equal epochs" table comes first, then "Equal steps".
    for budget, heading in (
        ("epochs", "**Equal epochs**"),
        ("steps", "**Equal steps**"),
    ):
        table = shown[shown.index(heading) :]
        for kind in normalization_code["KINDS"]:
            row = next(
                line for line in table.splitlines() if line.startswith(f"| {kind} |")
            )
            cells = [cell.strip() for cell in row.strip("|").split("|")]
            expected = [
                t_cell([v[budget][kind][str(b)] for v in variants]) for b in sizes
            ]
            assert cells[1:] == expected

"""`keras_optnotes.experiments.protocol`: the splits, the choice on validation, the
intervals, the budget.

The intervals are checked against `scipy.stats.t` applied to the same per-seed values;
the choice against a mean taken here with NumPy; the test split's isolation by
poisoning its labels and by recording every array training receives.
"""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest
from scipy import stats

from keras_optnotes.data import Split
from keras_optnotes.experiments import protocol

# --------------------------------------------------------------------------------------
# Student's t.


@pytest.mark.parametrize("df", [1, 1.5, 2, 3, 4, 5, 7, 9, 15, 30])
def test_exact_t_quantile_equals_scipy(df):
    for probability in (0.6, 0.9, 0.95, 0.975, 0.99, 0.995, 0.9995, 0.025, 1e-6):
        expected = stats.t.ppf(probability, df)
        got = protocol._student_t_quantile(probability, df)
        assert got == pytest.approx(expected, rel=1e-12), probability


def test_exact_t_quantile_for_many_degrees_of_freedom():
    for df in (100, 1000):
        assert protocol._student_t_quantile(0.975, df) == pytest.approx(
            stats.t.ppf(0.975, df), rel=1e-11
        )
    # Closed forms: ν = 1 is Cauchy, ν = 2 has t = (2p − 1) √(2 / (4p(1 − p))).
    assert protocol._student_t_quantile(0.975, 1) == pytest.approx(
        math.tan(math.pi * 0.475), rel=1e-12
    )
    p = 0.975
    assert protocol._student_t_quantile(p, 2) == pytest.approx(
        (2 * p - 1) * math.sqrt(2 / (4 * p * (1 - p))), rel=1e-12
    )


def test_t_quantile_without_scipy_uses_the_exact_computation(monkeypatch):
    monkeypatch.setitem(sys.modules, "scipy", None)  # `import scipy` now fails
    assert protocol.t_quantile(0.975, 7) == pytest.approx(
        stats.t.ppf(0.975, 7), rel=1e-12
    )


@pytest.mark.parametrize(
    "kwargs", [{"probability": 1.0, "df": 3}, {"probability": 0.9, "df": 0}]
)
def test_t_quantile_refuses_out_of_range(kwargs):
    with pytest.raises(ValueError, match="Received"):
        protocol.t_quantile(**kwargs)


# --------------------------------------------------------------------------------------
# Intervals.

ACCURACIES = [0.962, 0.955, 0.971, 0.949, 0.966, 0.958, 0.975, 0.952]
BASELINE = [0.951, 0.957, 0.960, 0.941, 0.955, 0.950, 0.962, 0.949]


def test_mean_interval_equals_scipy():
    interval = protocol.mean_interval(ACCURACIES)
    low, high = stats.t.interval(
        0.95, len(ACCURACIES) - 1, loc=np.mean(ACCURACIES), scale=stats.sem(ACCURACIES)
    )
    assert interval.mean == pytest.approx(np.mean(ACCURACIES), rel=1e-14)
    assert (interval.low, interval.high) == pytest.approx((low, high), rel=1e-12)
    assert interval.count == 8
    assert interval.to_dict()["ci95"] == pytest.approx([low, high], rel=1e-12)


def test_mean_interval_other_confidence():
    interval = protocol.mean_interval(ACCURACIES, confidence=0.9)
    low, _ = stats.t.interval(
        0.9, 7, loc=np.mean(ACCURACIES), scale=stats.sem(ACCURACIES)
    )
    assert interval.low == pytest.approx(low, rel=1e-12)
    assert "ci90" in interval.to_dict()


def test_paired_difference_equals_scipy_paired_t():
    difference = protocol.paired_difference(ACCURACIES, BASELINE)
    d = np.subtract(ACCURACIES, BASELINE)
    low, high = stats.t.interval(0.95, 7, loc=d.mean(), scale=stats.sem(d))
    assert difference.mean == pytest.approx(d.mean(), rel=1e-12)
    assert (difference.low, difference.high) == pytest.approx((low, high), rel=1e-12)
    # The paired t-test's p-value < 0.05 exactly when the interval excludes 0.
    p_value = stats.ttest_rel(ACCURACIES, BASELINE).pvalue
    assert difference.significant == (p_value < 0.05)
    assert difference.significant  # these values differ significantly: d > 0 on 7/8


def test_paired_difference_is_not_the_unpaired_one():
    # Pairing removes the seed-to-seed spread the two share: the paired interval of
    # these values is narrower than Welch's unpaired one.
    paired = protocol.paired_difference(ACCURACIES, BASELINE)
    welch = stats.ttest_ind(ACCURACIES, BASELINE, equal_var=False)
    welch_low = welch.confidence_interval(0.95).low
    assert paired.low > welch_low


def test_one_value_has_no_interval():
    interval = protocol.mean_interval([0.9])
    assert interval.mean == 0.9 and math.isnan(interval.low)
    assert interval.to_dict()["ci95"] == [None, None]
    assert not interval.significant


@pytest.mark.parametrize("values", [[], [1.0, float("nan")], [[1.0, 2.0]]])
def test_mean_interval_refuses_bad_values(values):
    with pytest.raises(ValueError, match="`values`"):
        protocol.mean_interval(values)


def test_paired_difference_refuses_unequal_lengths():
    with pytest.raises(ValueError, match="one value per seed"):
        protocol.paired_difference([1.0, 2.0], [1.0])


# --------------------------------------------------------------------------------------
# Splits and seeds.


def _split(samples=100, num_classes=3, seed=0):
    """A `Split` whose sample i has the features (i, i) and a label that its
    position decides; every sample is told apart by its first feature."""
    rng = np.random.default_rng(seed)
    x = np.repeat(np.arange(samples, dtype=np.float32)[:, None], 2, axis=1)
    centers = rng.normal(size=(num_classes, 2)).astype(np.float32) * 40
    y = rng.integers(0, num_classes, size=samples)
    x = x * 0.01 + centers[y]
    x[:, 1] = np.arange(samples)  # the sample's id, in the second feature
    order = rng.permutation(samples)
    train, val = order[:80], order[80:]
    return Split(x[train], y[train], x[val], y[val], num_classes, "toy")


def test_three_way_split_is_disjoint_and_complete():
    split = _split()
    three = protocol.three_way_split(split, validation_fraction=0.25, seed=3)
    ids = {
        name: set(array[:, 1].tolist())
        for name, array in (
            ("train", three.development.x_train),
            ("validation", three.development.x_val),
            ("test", three.x_test),
        )
    }
    assert three.sizes() == {"train": 60, "validation": 20, "test": 20}
    assert not ids["train"] & ids["validation"]
    assert not ids["train"] & ids["test"]
    assert not ids["validation"] & ids["test"]
    assert ids["train"] | ids["validation"] | ids["test"] == set(range(100))
    # The loader's validation set is the test split, untouched.
    np.testing.assert_array_equal(three.x_test, split.x_val)
    np.testing.assert_array_equal(three.y_test, split.y_val)
    # Labels travel with their samples.
    by_id = {int(i): label for i, label in zip(split.x_train[:, 1], split.y_train)}
    assert [by_id[int(i)] for i in three.development.x_val[:, 1]] == list(
        three.development.y_val
    )


def test_development_split_has_no_test_data():
    three = protocol.three_way_split(_split())
    assert not any("test" in name for name in vars(three.development))


def test_three_way_split_refuses_bad_fraction():
    with pytest.raises(ValueError, match="validation_fraction"):
        protocol.three_way_split(_split(), validation_fraction=1.0)


def test_seeds_are_disjoint():
    seeds = protocol.make_seeds(8, tuning=2)
    assert seeds.report == tuple(range(8))
    assert seeds.tuning == (1000, 1001)
    with pytest.raises(ValueError, match="disjoint"):
        protocol.Seeds(tuning=(0, 1), report=(1, 2))


def test_log_grid():
    np.testing.assert_allclose(
        protocol.log_grid(1e-3), [10**-3.5, 1e-3, 10**-2.5], rtol=1e-14
    )
    np.testing.assert_allclose(
        protocol.log_grid(1.0, count=4, factor=2.0), [2**-1.5, 2**-0.5, 2**0.5, 2**1.5]
    )
    with pytest.raises(ValueError, match="factor"):
        protocol.log_grid(1.0, factor=1.0)


# --------------------------------------------------------------------------------------
# The choice on validation.


def test_chosen_candidate_has_the_best_mean_validation_score():
    grid = [{"learning_rate": v} for v in (0.01, 0.03, 0.1, 0.3)]
    table = {  # score by (learning rate, seed); the best single score is not the pick
        (0.01, 1000): 0.80, (0.01, 1001): 0.82,
        (0.03, 1000): 0.91, (0.03, 1001): 0.90,
        (0.1, 1000): 0.97, (0.1, 1001): 0.70,
        (0.3, 1000): float("nan"), (0.3, 1001): 0.99,
    }  # fmt: skip
    development = protocol.three_way_split(_split()).development
    search = protocol.choose_on_validation(
        lambda c, s, d: table[(c["learning_rate"], s)], grid, (1000, 1001), development
    )
    means = [np.mean([table[(c["learning_rate"], s)] for s in (1000, 1001)])
             for c in grid]  # fmt: skip
    assert search.mean_scores[:3] == pytest.approx(means[:3], rel=1e-15)
    assert search.best == {"learning_rate": 0.03}  # the diverged 0.3 is never chosen
    assert search.best_index == int(np.nanargmax(means))
    assert not search.on_edge("learning_rate")
    assert search.to_dict()["validation_scores"][1] == [0.91, 0.90]


def test_choice_can_minimize_and_prefers_the_first_of_equals():
    development = protocol.three_way_split(_split()).development
    grid = [{"batch": b} for b in (1, 2, 3)]
    scores = {1: 5.0, 2: 3.0, 3: 3.0}
    search = protocol.choose_on_validation(
        lambda c, s, d: scores[c["batch"]], grid, (7,), development, maximize=False
    )
    assert search.best == {"batch": 2}


def _peaked(peak):
    """A validation score with its best at learning rate `peak`, on every seed."""
    return lambda c, s, d: -((math.log10(c["learning_rate"]) - math.log10(peak)) ** 2)


@pytest.mark.parametrize(
    "peak, extensions, tried, still_on_edge",
    [
        # the winner on the top edge: 0.1·(0.1/0.01) = 1, then 10, where 1 wins inside
        (1.0, 2, [0.001, 0.01, 0.1, 1.0, 10.0], False),
        # one extension allowed: 1 wins, on the new edge
        (3.0, 1, [0.001, 0.01, 0.1, 1.0], True),
        # the bottom edge: 1e-4 wins inside after one extension (1e-5 loses)
        (1e-4, 3, [0.001, 0.01, 0.1, 1e-4, 1e-5], False),
        # inside from the start: nothing added
        (0.01, 2, [0.001, 0.01, 0.1], False),
    ],
)
def test_a_winner_on_the_edge_extends_the_grid(peak, extensions, tried, still_on_edge):
    development = protocol.three_way_split(_split()).development
    calls = []

    def score(candidate, seed, dev):
        calls.append((candidate["learning_rate"], seed))
        return _peaked(peak)(candidate, seed, dev)

    grid = [{"learning_rate": v} for v in (0.001, 0.01, 0.1)]
    search = protocol.choose_on_validation(
        score, grid, (5, 6), development, max_extensions=extensions
    )
    learning_rates = [c["learning_rate"] for c in search.candidates]
    assert learning_rates == pytest.approx(tried, rel=1e-12)
    # Every candidate was trained once per tuning seed, the new ones included.
    assert calls == [(lr, seed) for lr in learning_rates for seed in (5, 6)]
    best = learning_rates[int(np.argmax([_peaked(peak)({"learning_rate": lr}, 0, 0)
                                         for lr in learning_rates]))]  # fmt: skip
    assert search.best["learning_rate"] == best
    assert search.extensions == len(tried) - 3
    assert search.to_dict()["edge_extensions"] == len(tried) - 3
    assert search.on_edge("learning_rate") is still_on_edge


def test_an_extension_keeps_the_winners_other_settings():
    development = protocol.three_way_split(_split()).development
    grid = [
        {"learning_rate": lr, "rho": rho} for lr in (0.01, 0.1) for rho in (0.05, 0.1)
    ]

    def score(candidate, seed, dev):  # best at the largest rate, ρ = 0.1
        return candidate["learning_rate"] + candidate["rho"]

    search = protocol.choose_on_validation(
        score, grid, (0,), development, max_extensions=1
    )
    assert dict(search.candidates[-1]) == pytest.approx(
        {"learning_rate": 1.0, "rho": 0.1}
    )
    assert len(search.candidates) == 5


def test_no_extension_from_a_diverged_grid_or_when_not_asked():
    development = protocol.three_way_split(_split()).development
    grid = [{"learning_rate": v} for v in (0.01, 0.1, 1.0)]
    diverged = protocol.choose_on_validation(
        lambda c, s, d: float("nan"), grid, (0,), development, max_extensions=2
    )
    assert len(diverged.candidates) == 3 and diverged.extensions == 0
    default = protocol.choose_on_validation(_peaked(10.0), grid, (0,), development)
    assert len(default.candidates) == 3 and default.on_edge("learning_rate")
    with pytest.raises(ValueError, match="max_extensions"):
        protocol.choose_on_validation(
            _peaked(1.0), grid, (0,), development, max_extensions=-1
        )


def test_choice_refuses_a_split_with_test_data():
    three = protocol.three_way_split(_split())
    with pytest.raises(ValueError, match="DevelopmentSplit"):
        protocol.choose_on_validation(lambda c, s, d: 0.0, [{}], (0,), three)


# --------------------------------------------------------------------------------------
# The whole protocol, with a classifier cheap enough to train here: nearest class
# centroid over `size` training samples drawn by the seed.


class _Centroids:
    def __init__(self, centroids):
        self.centroids = centroids

    def __call__(self, x, training=False):
        distances = ((x[:, None, :] - self.centroids[None]) ** 2).sum(-1)
        logits = -distances / 100.0
        logits -= logits.max(axis=1, keepdims=True)
        return np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)


def _arm(name, sizes, seen=None):
    def train(setting, seed, development):
        if seen is not None:
            seen.append(development)
        rng = np.random.default_rng(seed)
        pick = rng.permutation(len(development.x_train))[: setting["size"]]
        x, y = development.x_train[pick, :1], development.y_train[pick]
        centroids = np.stack(
            [x[y == c].mean(0) if np.any(y == c) else np.full(1, 1e9)
             for c in range(development.num_classes)]
        )  # fmt: skip
        return _OneFeature(_Centroids(centroids))

    return protocol.Arm(
        name=name,
        config={"model": "centroids"},
        candidates=tuple({"size": s} for s in sizes),
        train=train,
    )


class _OneFeature:  # the classifier reads the first feature only (the second is an id)
    def __init__(self, inner):
        self.inner = inner

    def __call__(self, x, training=False):
        return self.inner(x[:, :1], training=training)


def _measure(model, split, seed):
    scores = protocol.classification_scores(model, split.x_test, split.y_test)
    return {"test_accuracy": scores["accuracy"], "test_loss": scores["loss"]}


def _run(split, seen=None):
    return protocol.run_protocol(
        split,
        [_arm("few", (1, 2, 3), seen), _arm("many", (3, 10, 40), seen)],
        seeds=protocol.make_seeds(5, tuning=2),
        budget=protocol.Budget("steps", 100),
        measure=_measure,
        baseline="few",
    )


def test_test_split_never_reaches_the_tuning():
    split = protocol.three_way_split(_split(samples=300, seed=1), seed=1)
    seen = []
    clean = _run(split, seen)
    test_ids = set(split.x_test[:, 1].tolist())
    for development in seen:  # everything training received
        assert isinstance(development, protocol.DevelopmentSplit)
        for array in (development.x_train, development.x_val):
            assert not set(array[:, 1].tolist()) & test_ids
    # Poisoned test labels change the report, never the choice.
    poisoned = protocol.ThreeWaySplit(
        split.development, split.x_test, (split.y_test + 1) % split.num_classes
    )
    dirty = _run(poisoned)
    for name in ("few", "many"):
        assert dirty.get(name).search == clean.get(name).search
        assert dirty.get(name).config == clean.get(name).config
        assert dirty.get(name).per_seed["test_accuracy"] != pytest.approx(
            clean.get(name).per_seed["test_accuracy"]
        )


def test_protocol_report_equals_an_independent_computation():
    split = protocol.three_way_split(_split(samples=300, seed=2), seed=2)
    result = _run(split)
    data = result.to_dict()
    assert data["protocol"]["split"] == split.sizes()
    assert data["protocol"]["seeds"] == [0, 1, 2, 3, 4]
    assert data["protocol"]["tuning_seeds"] == [1000, 1001]
    assert data["protocol"]["budget"]["kind"] == "steps"
    for name in ("few", "many"):
        arm = result.get(name)
        # The choice: the candidate with the best mean validation accuracy, computed
        # here from the per-seed scores' definition.
        expected_means = []
        for candidate in arm.search.candidates:
            accuracies = []
            for seed in (1000, 1001):
                model = _arm(name, ()).train(candidate, seed, split.development)
                p = model(split.development.x_val)
                accuracies.append(np.mean(p.argmax(1) == split.development.y_val))
            expected_means.append(np.mean(accuracies))
        assert arm.search.mean_scores == pytest.approx(expected_means, rel=1e-15)
        assert arm.config["size"] == arm.search.candidates[
            int(np.argmax(expected_means))]["size"]  # fmt: skip
        entry = data["runs"][name]
        values = arm.per_seed["test_accuracy"]
        assert len(values) == 5
        low, high = (
            stats.t.interval(0.95, 4, loc=np.mean(values), scale=stats.sem(values))
            if np.std(values) > 0
            else (np.mean(values),) * 2
        )
        assert entry["test_accuracy"]["ci95"] == pytest.approx([low, high], rel=1e-12)
        assert entry["config"]["model"] == "centroids"
        assert entry["learning_rate_grid"] == []
    d = np.subtract(
        result.get("many").per_seed["test_accuracy"],
        result.get("few").per_seed["test_accuracy"],
    )
    low, high = stats.t.interval(0.95, 4, loc=d.mean(), scale=stats.sem(d))
    assert data["runs"]["many"]["difference_vs_few"]["test_accuracy"][
        "ci95"
    ] == pytest.approx([low, high], rel=1e-12)
    assert data["runs"]["few"]["difference_vs_few"]["test_accuracy"]["mean"] == 0.0


def test_run_protocol_refuses_a_missing_baseline():
    split = protocol.three_way_split(_split())
    with pytest.raises(ValueError, match="baseline"):
        protocol.run_protocol(
            split, [_arm("a", (1,))], seeds=protocol.make_seeds(2),
            budget=protocol.Budget("epochs", 1), measure=_measure, baseline="b",
        )  # fmt: skip


# --------------------------------------------------------------------------------------
# The budget.


def test_budget_arithmetic():
    steps = protocol.Budget("steps", 100)
    assert steps.steps(16, 1150) == 100 and steps.steps(512, 1150) == 100
    assert steps.epochs(16, 1150) == 2  # 72 steps per epoch
    assert steps.epochs(512, 1150) == 34  # 3 steps per epoch
    epochs = protocol.Budget("epochs", 10)
    assert epochs.steps(16, 1150) == 720 and epochs.steps(512, 1150) == 30
    assert epochs.epochs(512, 1150) == 10
    record = steps.to_dict({"small": 16, "large": 512}, 1150)
    assert record["steps"] == {"small": 100, "large": 100}
    assert record["epochs"]["large"] == pytest.approx(100 / 3, rel=1e-15)
    with pytest.raises(ValueError, match="kind"):
        protocol.Budget("seconds", 3)
    with pytest.raises(ValueError, match="amount"):
        protocol.Budget("steps", 0)


@pytest.mark.parametrize(
    "budget, batch_size, expected_steps",
    [(("steps", 7), 8, 7), (("epochs", 2), 16, 2 * 3)],  # 40 samples: 3 batches of 16
)
def test_fit_for_budget_takes_exactly_the_budget(budget, batch_size, expected_steps):
    import keras

    rng = np.random.default_rng(0)
    development = protocol.DevelopmentSplit(
        rng.normal(size=(40, 3)).astype("float32"), rng.integers(0, 2, 40),
        rng.normal(size=(8, 3)).astype("float32"), rng.integers(0, 2, 8), 2, "toy",
    )  # fmt: skip
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(
        optimizer=keras.optimizers.SGD(0.01),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    protocol.fit_for_budget(
        model,
        development,
        batch_size=batch_size,
        budget=protocol.Budget(*budget),
        seed=0,
    )
    assert int(model.optimizer.iterations) == expected_steps

"""`keras_optnotes.experiments.summary` and the report's figure and Markdown helpers
that the tutorials use, against independent computations (scipy, hand-worked
numbers)."""

import json
import math

import numpy as np
import pytest
from scipy import stats

from keras_optnotes import experiments, report

A = [0.91, 0.93, 0.92, 0.94, 0.95]
B = [0.90, 0.91, 0.93, 0.92, 0.91]


def test_spread_is_the_sample_mean_and_deviation():
    s = experiments.spread([[1.0, 2.0], [4.0, 9.0]])
    # mean 4, deviations −3, −2, 0, 5: s² = 38 / 3
    assert (s.mean, s.low, s.high, s.n) == (4.0, 1.0, 9.0, 4)
    assert s.std == pytest.approx(math.sqrt(38 / 3), rel=1e-15)
    assert str(s) == "4 ± 3.6"
    one = experiments.spread([2.5])
    assert (one.std, str(one)) == (0.0, "2.5")
    assert math.isnan(experiments.spread([1.0, np.nan]).mean)
    with pytest.raises(ValueError, match="empty"):
        experiments.spread([])


def test_estimate_interval_is_scipys_t_interval():
    e = experiments.estimate(np.array(A))
    low, high = stats.t.interval(0.95, len(A) - 1, np.mean(A), stats.sem(A))
    assert e.values == tuple(A)
    assert e.interval.low == pytest.approx(low, abs=1e-12)
    assert e.interval.high == pytest.approx(high, abs=1e-12)
    assert str(e) == f"{np.mean(A):.4g} [{low:.3g}, {high:.3g}]"
    assert str(experiments.estimate([0.5])) == "0.5"


def test_paired_difference_is_scipys_on_the_per_seed_differences():
    d = np.subtract(A, B)
    low, high = stats.t.interval(0.95, len(d) - 1, d.mean(), stats.sem(d))
    text = experiments.difference(experiments.estimate(A), experiments.estimate(B))
    assert text == f"{d.mean():+.3g} [{low:+.3g}, {high:+.3g}], " + (
        "significant" if low > 0 or high < 0 else "not significant"
    )
    # A − B: +0.016 with interval [−0.0047, +0.037]: not significant, sign 0;
    # shifted by 0.05 it is significant either way round.
    a, b = experiments.estimate(A), experiments.estimate(B)
    assert experiments.significant_difference(a, b) == (
        1 if low > 0 else -1 if high < 0 else 0
    )
    assert low < 0 < high
    lifted = experiments.estimate(np.add(A, 0.05))
    assert experiments.significant_difference(lifted, b) == 1
    assert experiments.significant_difference(b, lifted) == -1
    one = experiments.estimate([0.9])
    assert experiments.difference(one, experiments.estimate([0.8])) == (
        "+0.1 (one seed: no interval)"
    )
    with pytest.raises(ValueError, match="one value per seed"):
        experiments.difference(a, one)


def test_wilson_interval_by_hand():
    # k = 0, n = 10, z = 1.96: centre (z²/20)/(1 + z²/10), half the same: [0, 2c].
    z = 1.959963984540054
    c = (z**2 / 20) / (1 + z**2 / 10)
    low, high = experiments.wilson_interval(0, 10)
    assert low == 0.0 and high == pytest.approx(2 * c, rel=1e-12)
    # exactly 0 where rounding gave 1.7e-18 (a negative error bar to matplotlib)
    assert experiments.wilson_interval(0, 200)[0] == 0.0
    assert experiments.wilson_interval(200, 200)[1] == 1.0
    # k = n = 4: the mirror image
    low, high = experiments.wilson_interval(4, 4)
    c4 = (z**2 / 8) / (1 + z**2 / 4)
    assert high == 1.0 and low == pytest.approx(1 - 2 * c4, rel=1e-12)
    # Wilson's interval is the set of p with (p̂ − p)² ≤ z² p(1 − p)/n: the roots of
    # (1 + z²/n) p² − (2p̂ + z²/n) p + p̂² = 0.
    for k, n in ((17, 100), (3, 7), (199, 200)):
        p_hat = k / n
        roots = np.roots([1 + z**2 / n, -(2 * p_hat + z**2 / n), p_hat**2])
        np.testing.assert_allclose(
            experiments.wilson_interval(k, n), sorted(roots.real), rtol=1e-12
        )
    assert all(math.isnan(v) for v in experiments.wilson_interval(0, 0))
    with pytest.raises(ValueError, match="successes"):
        experiments.wilson_interval(5, 4)


def test_descend_takes_the_rules_steps():
    import keras

    # f = x² + 3y² from (1, 1) and (−2, 0.5), SGD η = 0.125 with momentum 0.5
    # (both exact in the optimizer's float32 hyper-parameters): v ← 0.5 v − η g,
    # θ ← θ + v.
    def gradient(p):
        return p * np.array([2.0, 6.0])

    start = np.array([[1.0, 1.0], [-2.0, 0.5]])
    path, recorded = experiments.descend(
        keras.optimizers.SGD(0.125, momentum=0.5),
        gradient,
        start,
        3,
        record=lambda optimizer: optimizer.iterations,
    )
    theta, v, expected = start.copy(), np.zeros_like(start), [start]
    for _ in range(3):
        v = 0.5 * v - 0.125 * gradient(theta)
        theta = theta + v
        expected.append(theta)
    np.testing.assert_allclose(path, np.stack(expected), rtol=1e-15, atol=1e-15)
    assert recorded.tolist() == [1.0, 2.0, 3.0]
    with pytest.raises(ValueError, match="start"):
        experiments.descend(keras.optimizers.SGD(0.1), gradient, [1.0, 2.0], 1)


def test_run_description_names_the_time_and_the_versions():
    import keras

    from keras_optnotes import __version__

    line = experiments.run_description(42.4, cpu_seconds=61.2)
    assert line.startswith("Run in 42 s (61 s of CPU time) on ")
    assert f"Keras {keras.__version__} ({keras.backend.backend()})" in line
    assert line.endswith(f"keras-optnotes {__version__}.")


def test_mean_band_draws_the_mean_and_the_band():
    figure = report.new_figure()
    axes = figure.subplots()
    runs = [[1.0, 10.0], [3.0, 1000.0]]
    line = report.mean_band(axes, [1, 2], runs, label="a", color="k")
    assert line.get_ydata().tolist() == [2.0, 505.0]
    assert line.get_label() == "a (n=2)"
    (band,) = axes.collections
    # the band spans mean ± s: at x = 1, 2 ± √2; at x = 2, 505 ± 990/√2
    vertices = band.get_paths()[0].vertices
    for x, mean, s in ((1.0, 2.0, math.sqrt(2)), (2.0, 505.0, 990 / math.sqrt(2))):
        ys = vertices[vertices[:, 0] == x, 1]
        np.testing.assert_allclose(
            [ys.min(), ys.max()], [mean - s, mean + s], rtol=1e-12
        )
    geometric = report.mean_band(axes, [1, 2], runs, label="g", log=True, band="range")
    np.testing.assert_allclose(geometric.get_ydata(), [math.sqrt(3), 100.0], rtol=1e-12)
    with pytest.raises(ValueError, match="band"):
        report.mean_band(axes, [1, 2], runs, label="x", band="iqr")


def test_label_axes():
    figure = report.new_figure()
    axes = figure.subplots()
    axes.plot([1, 10], [1, 100], label="line")
    assert report.label_axes(axes, "x", "y", "t", log="xy", grid=True) is axes
    assert (axes.get_xlabel(), axes.get_ylabel(), axes.get_title()) == ("x", "y", "t")
    assert (axes.get_xscale(), axes.get_yscale()) == ("log", "log")
    assert axes.get_legend() is not None
    with pytest.raises(ValueError, match="log"):
        report.label_axes(axes, "x", log="z")


def test_show_markdown_prints_outside_ipython(capsys):
    report.show_markdown("| a |\n|---|\n| 1 |")
    assert capsys.readouterr().out == "| a |\n|---|\n| 1 |\n"


def test_write_json_makes_plain_json(tmp_path):
    value = {
        "array": np.array([[1.0, np.nan]]),
        "scalar": np.float32(2.5),
        "spread": experiments.spread([1.0, 3.0]),
        "estimate": experiments.estimate([1.0, 2.0]),
        "tuple": (np.int64(3), math.inf),
    }
    path = report.write_json(tmp_path / "r.json", value)
    assert json.loads(path.read_text(encoding="utf-8")) == {
        "array": [[1.0, None]],
        "scalar": 2.5,
        "spread": {"mean": 2.0, "std": math.sqrt(2), "low": 1.0, "high": 3.0, "n": 2},
        "estimate": {"values": [1.0, 2.0]},
        "tuple": [3, None],
    }

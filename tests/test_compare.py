"""`keras-optnotes compare`: quick runs in a temporary folder, determinism, bad input.

The experiment itself is tested in test_experiments_compare.py.
"""

import contextlib
import csv
import io
import math
import subprocess
import sys

import numpy as np
import pytest

from keras_optnotes import cli
from keras_optnotes.commands import compare
from keras_optnotes.data import load
from keras_optnotes.experiments.compare import Comparison, OptimizerRun
from keras_optnotes.report import format_cell

QUICK = ["compare", "--quick", "--curves", "--seed", "3"]


def _run(argv, capsys):
    status = cli.main(argv)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def _table(path):
    """The Markdown table of compare.md as a list of cell lists (header first)."""
    lines = [line for line in path.read_text().splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]


def _history(path):
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


@pytest.fixture(scope="module")
def quick_runs(tmp_path_factory):
    """Two `compare --quick` runs with the same seed.

    The first is a real `python -m keras_optnotes` process; the second runs in this
    process with matplotlib hidden.
    """
    first = tmp_path_factory.mktemp("first") / "report"
    second = tmp_path_factory.mktemp("second") / "report"
    process = subprocess.run(
        [sys.executable, "-m", "keras_optnotes", *QUICK, "--out", str(first)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    results = {"first": (process.returncode, first, process.stdout, process.stderr)}
    stdout, stderr = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(sys.modules, "matplotlib.figure", None)
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            status = cli.main([*QUICK, "--out", str(second)])
    results["second"] = (status, second, stdout.getvalue(), stderr.getvalue())
    return results


def test_quick_run_writes_table_history_and_plot(quick_runs):
    status, out, stdout, stderr = quick_runs["first"]
    assert status == 0, stderr
    assert sorted(p.name for p in out.iterdir()) == [
        "compare.csv",
        "compare.md",
        "compare.png",
    ]
    assert (out / "compare.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in out.parent.iterdir() if p.name != "report"]  # no staging

    header, _, *rows = _table(out / "compare.md")
    assert header == list(compare.TABLE_COLUMNS)
    assert [row[0] for row in rows] == list(compare.QUICK_OPTIMIZERS)
    history = _history(out / "compare.csv")
    assert len(history) == len(compare.QUICK_OPTIMIZERS) * compare.QUICK_EPOCHS
    for row, rule in zip(rows, compare.QUICK_OPTIMIZERS, strict=True):
        epochs = [h for h in history if h["optimizer"] == rule]
        assert [int(h["epoch"]) for h in epochs] == [1, 2]
        losses = [float(h["loss"]) for h in epochs]
        val_losses = [float(h["val_loss"]) for h in epochs]
        assert all(math.isfinite(v) for v in losses + val_losses)
        # Ten classes from small random weights: the loss starts near ln 10.
        assert abs(losses[0] - math.log(10)) < 0.3
        # The table is the history summarized.
        assert float(row[1]) == compare.DEFAULT_LEARNING_RATES[rule]
        assert float(row[2]) == pytest.approx(losses[-1], rel=1e-3)
        best_acc = max(float(h["val_accuracy"]) for h in epochs)
        assert float(row[3]) == pytest.approx(best_acc, rel=1e-3)
        assert int(row[4]) == int(np.argmin(val_losses)) + 1
        assert float(row[5]) > 0 and float(row[6]) > 0
    # The same table is printed.
    rate = format_cell(compare.DEFAULT_LEARNING_RATES["GradientDescent"])
    assert f"| GradientDescent | {rate} |" in stdout
    assert str(out / "compare.png") in stdout


def test_same_seed_same_numbers(quick_runs):
    first, second = quick_runs["first"][1], quick_runs["second"][1]
    timing = {"ms_per_step"}
    a, b = _history(first / "compare.csv"), _history(second / "compare.csv")
    assert [{k: v for k, v in r.items() if k not in timing} for r in a] == [
        {k: v for k, v in r.items() if k not in timing} for r in b
    ]
    table_a, table_b = _table(first / "compare.md"), _table(second / "compare.md")
    assert [row[:5] for row in table_a] == [row[:5] for row in table_b]


def test_without_matplotlib_the_plot_is_skipped(quick_runs):
    status, out, stdout, stderr = quick_runs["second"]
    assert status == 0
    assert sorted(p.name for p in out.iterdir()) == ["compare.csv", "compare.md"]
    assert "plot skipped" in stderr and 'pip install "keras-optnotes[plot]"' in stderr
    assert "compare.png" not in stdout


@pytest.mark.parametrize(
    "argv, named",
    [
        (["--dataset", "imagenet"], ["imagenet", "digits", "spirals"]),
        (["--optimizers", "adam,lbfgs"], ["lbfgs", "GradientDescent", "Adam"]),
        (["--optimizers", ","], ["all", "Adam"]),
        (["--epochs", "0"], ["--epochs", "'0'", "positive integer"]),
        (["--epochs", "two"], ["--epochs", "'two'", "positive integer"]),
        (["--batch-size", "-4"], ["--batch-size", "'-4'", "positive integer"]),
        (["--seed", "-1"], ["--seed", "'-1'", ">= 0"]),
        (["--learning-rate", "adam"], ["'adam'", "NAME=VALUE"]),
        (["--learning-rate", "adam=-0.1"], ["adam=-0.1", "> 0"]),
        (["--learning-rate", "adam=fast"], ["adam=fast", "> 0"]),
        (["--learning-rate", "newton=1"], ["newton", "RMSprop"]),
    ],
)
def test_bad_input_is_one_line_and_status_2(argv, named, tmp_path, capsys):
    out = tmp_path / "report"
    status, stdout, stderr = _run(
        ["compare", "--curves", *argv, "--out", str(out)], capsys
    )
    assert status == 2
    assert stderr.count("\n") == 1 and stderr.startswith("keras-optnotes compare")
    assert "Traceback" not in stderr
    for text in named:
        assert text in stderr
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_unwritable_out_is_refused_before_training(tmp_path, capsys, monkeypatch):
    def must_not_train(*args, **kwargs):
        raise AssertionError("trained although --out is unusable")

    monkeypatch.setattr(compare, "run_comparison", must_not_train)
    monkeypatch.setattr(compare, "rank_rules", must_not_train)
    afile = tmp_path / "results.txt"
    afile.write_text("mine")
    for out in (afile, afile / "sub", "/proc/keras-optnotes-report"):
        for mode in ([], ["--curves"]):
            status, _, stderr = _run(
                ["compare", "--quick", *mode, "--out", str(out)], capsys
            )
            assert status == 2 and stderr.count("\n") == 1
            assert str(out) in stderr
    assert afile.read_text() == "mine" and list(tmp_path.iterdir()) == [afile]


def test_failure_midway_leaves_out_as_it_was(tmp_path, capsys, monkeypatch):
    out = tmp_path / "report"
    out.mkdir()
    (out / "compare.md").write_text("previous run")

    def fake_runs(split, learning_rates, **kwargs):
        history = {k: (1.0,) for k in ("loss", "accuracy", "val_loss", "val_accuracy")}
        runs = tuple(
            OptimizerRun(rule, rate, history, (5.0,), 1)
            for rule, rate in learning_rates.items()
        )
        return Comparison(split.name, len(split.x_train), 1, 32, 0, True, runs)

    def disk_full(*args, **kwargs):  # strikes after compare.md and .csv are staged
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(compare, "run_comparison", fake_runs)
    monkeypatch.setattr(compare, "plot_losses", disk_full)
    with pytest.raises(OSError, match="No space"):
        cli.main(["compare", "--quick", "--curves", "--out", str(out)])
    assert [p.name for p in out.iterdir()] == ["compare.md"]
    assert (out / "compare.md").read_text() == "previous run"
    assert [p.name for p in tmp_path.iterdir()] == ["report"]


def test_offline_dataset_is_a_one_line_error(tmp_path, capsys, monkeypatch):
    import urllib.error

    from keras.src.utils import file_utils

    def offline(url, *args, **kwargs):
        raise urllib.error.URLError("no network in tests")

    monkeypatch.setattr(file_utils, "urlretrieve", offline)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    out = tmp_path / "report"
    status, _, stderr = _run(
        ["compare", "--dataset", "mnist", "--out", str(out)], capsys
    )
    assert status == 2 and stderr.count("\n") == 1
    assert "mnist" in stderr and "digits, spirals, waveforms" in stderr
    assert not out.exists()


# --------------------------------------------------------------------------------------
# The ranking over seeds (the default).


def _t_interval(values):
    from scipy import stats

    values = np.asarray(values, dtype=np.float64)
    return stats.t.interval(
        0.95, len(values) - 1, loc=values.mean(), scale=stats.sem(values)
    )


@pytest.mark.slow
def test_quick_ranking_writes_json_with_intervals(tmp_path, capsys):
    import json

    out = tmp_path / "report"
    status, stdout, stderr = _run(
        ["compare", "--quick", "--seeds", "3", "--out", str(out)], capsys
    )
    assert status == 0, stderr
    assert sorted(p.name for p in out.iterdir()) == [
        "compare.csv",
        "compare.json",
        "compare.md",
        "compare.png",
    ]
    assert (out / "compare.md").read_text().startswith("# keras-optnotes compare\n\n")
    assert stdout.rstrip().endswith(
        "Wrote "
        + ", ".join(
            str(out / f"compare.{kind}") for kind in ("json", "md", "csv", "png")
        )
    )
    data = json.loads((out / "compare.json").read_text())
    # The loader's validation set is the test split; the protocol holds out a fifth
    # of the loader's training set for validation.
    loaded = load("digits", max_samples=256)
    held_out = round(0.2 * len(loaded.x_train))
    sizes = {
        "train": len(loaded.x_train) - held_out,
        "validation": held_out,
        "test": len(loaded.x_val),
    }
    assert data["protocol"]["split"] == sizes
    tested = sizes["test"]
    assert data["protocol"]["seeds"] == [0, 1, 2]
    assert sorted(data["ranking"]) == sorted(compare.QUICK_OPTIMIZERS)
    means = []
    for rule in data["ranking"]:
        run = data["runs"][rule]
        default = compare.DEFAULT_LEARNING_RATES[rule]
        # The rule's own grid: ÷ and × √10 around its default.
        assert run["learning_rate_grid"] == pytest.approx(
            [default / 10**0.5, default, default * 10**0.5], rel=1e-12
        )
        search = run["search"]
        best = int(np.argmax(np.mean(search["validation_scores"], axis=1)))
        assert (
            run["config"]["learning_rate"]
            == search["candidates"][best]["learning_rate"]
        )
        accuracy = run["per_seed"]["test_accuracy"]
        assert all(abs(a * tested - round(a * tested)) < 1e-9 for a in accuracy)
        if np.std(accuracy) > 0:
            assert run["test_accuracy"]["ci95"] == pytest.approx(
                _t_interval(accuracy), rel=1e-9
            )
        means.append(np.mean(accuracy))
        top = data["runs"][data["ranking"][0]]["per_seed"]["test_loss"]
        difference = np.subtract(run["per_seed"]["test_loss"], top)
        if np.std(difference) > 0:
            assert run["difference_vs_best"]["test_loss"]["ci95"] == pytest.approx(
                _t_interval(difference), rel=1e-9
            )
    assert means == sorted(means, reverse=True)  # ranked by mean test accuracy
    per_seed = _history(out / "compare.csv")
    assert len(per_seed) == 3 * len(compare.QUICK_OPTIMIZERS)
    assert "95 % t-interval" in stdout


@pytest.mark.parametrize(
    "argv, named",
    [
        (["--seeds", "1"], ["--seeds", "'1'", ">= 2"]),
        (["--learning-rate", "adam=0.1"], ["--learning-rate", "--curves"]),
    ],
)
def test_bad_ranking_input_is_one_line(argv, named, tmp_path, capsys):
    status, _, stderr = _run(["compare", *argv, "--out", str(tmp_path)], capsys)
    assert status == 2 and stderr.count("\n") == 1
    for text in named:
        assert text in stderr

"""`keras-optnotes regularize`: the quick run's files, parsing and bad input.

The experiment itself (scoring, the gap ordering of the default run, label noise) is
tested in test_experiments_regularize.py.
"""

import csv

import numpy as np
import pytest

from keras_optnotes import cli
from keras_optnotes.commands import regularize


def _run(argv, capsys):
    status = cli.main(argv)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.fixture(scope="module")
def quick_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("regularize") / "report"
    status = cli.main(["regularize", "--quick", "--out", str(out)])
    return status, out


def test_quick_run_writes_table_csv_and_chart(quick_report):
    status, out = quick_report
    assert status == 0
    with open(out / "regularize.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert [row["technique"] for row in rows] == list(regularize.QUICK_TECHNIQUES)
    for row in rows:
        train, val = float(row["train loss"]), float(row["val loss"])
        assert np.isfinite(train) and np.isfinite(val)
        gap = float(row["loss gap (val - train)"])
        assert gap == pytest.approx(val - train, abs=1e-12)
        train_acc, val_acc = float(row["train accuracy"]), float(row["val accuracy"])
        assert 0.0 <= train_acc <= 1.0 and 0.0 <= val_acc <= 1.0
        gap = float(row["error gap (train - val acc)"])
        assert gap == pytest.approx(train_acc - val_acc, abs=1e-12)
        assert 1 <= int(row["epochs run"]) <= regularize.QUICK_EPOCHS
    table = (out / "regularize.md").read_text()
    assert all(f"| {name} |" in table for name in regularize.QUICK_TECHNIQUES)
    assert (out / "regularize.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_parse_techniques():
    assert regularize.parse_techniques(None) == regularize.TECHNIQUE_NAMES
    assert regularize.parse_techniques(" Dropout, none,dropout") == ("dropout", "none")
    without_images = regularize.parse_techniques("all", images=False)
    assert "mixup" not in without_images and "weight_noise" in without_images


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--techniques", "dropout,shrinkage"], ["shrinkage", "batch_norm"]),
        (["--techniques", ","], ["--techniques", "all"]),
        (["--dataset", "spirals", "--techniques", "cutmix"], ["cutmix", "images"]),
        (["--epochs", "0"], ["--epochs", "0"]),
        (["--label-noise", "1.5"], ["--label-noise", "1.5", "[0, 1]"]),
        (["--label-noise", "nan"], ["--label-noise", "nan"]),
        (["--dataset", "imagenet"], ["imagenet", "digits"]),
    ],
)
def test_bad_input_is_one_line_with_status_2(argv, words, capsys, tmp_path):
    out = tmp_path / "report"
    status, _, err = _run(["regularize", *argv, "--out", str(out)], capsys)
    assert status == 2
    assert err.count("\n") == 1
    assert all(word in err for word in words)
    assert list(tmp_path.iterdir()) == []  # no report and no staging folder left


def test_the_command_passes_its_options_and_prints_the_table(
    capsys, tmp_path, monkeypatch
):
    # The experiment replaced by a recorder: what the command asks for, and that it
    # prints and writes what the experiment returns.
    from keras_optnotes.experiments.regularize import Ablation, TechniqueRun

    calls = []

    def fake_ablation(split, techniques, **kwargs):
        calls.append((split, techniques, kwargs))
        kwargs["progress"]("[1/1] dropout")
        run = TechniqueRun("dropout", "Dropout(0.5)", 0.25, 1.0, 1.0, 0.75, 7, {})
        return Ablation(split.name, 20, len(split.x_val), 0.1, 7, 16, 4, (run,))

    monkeypatch.setattr(regularize, "run_ablation", fake_ablation)
    out = tmp_path / "report"
    argv = ["--techniques", "dropout", "--epochs", "7", "--train-size", "20"]
    argv += ["--label-noise", "0.1", "--batch-size", "16", "--seed", "4"]
    status, stdout, _ = _run(["regularize", *argv, "--out", str(out)], capsys)
    assert status == 0
    [(split, techniques, kwargs)] = calls
    assert split.name == "digits" and techniques == ("dropout",)
    assert len(split.x_val) == 898  # half the digits: VALIDATION_FRACTION
    assert {k: v for k, v in kwargs.items() if k != "progress"} == {
        "epochs": 7,
        "train_size": 20,
        "batch_size": 16,
        "label_noise": 0.1,
        "seed": 4,
    }
    row = "| dropout | Dropout(0.5) | 0.25 | 1 | 0.75 | 1 | 0.75 | 0.25 | 7 |"
    assert stdout.startswith("[1/1] dropout\n") and row in stdout
    assert row in (out / "regularize.md").read_text()
    assert "20 training samples (10% of their labels wrong)" in stdout


def test_plot_gaps_returns_the_figure_and_draws_into_given_axes(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    from keras_optnotes.experiments.regularize import Ablation, TechniqueRun

    monkeypatch.chdir(tmp_path)
    runs = (
        TechniqueRun("none", "no regularizer", 0.05, 0.9, 1.0, 0.7, 7, {}),
        TechniqueRun("dropout", "Dropout(0.5)", 0.25, 0.6, 0.95, 0.8, 7, {}),
    )
    ablation = Ablation("digits", 20, 100, 0.1, 7, 16, 4, runs)
    figure = regularize.plot_gaps(ablation)
    assert list(tmp_path.iterdir()) == []
    loss_panel, error_panel = figure.axes
    widths = [patch.get_width() for patch in loss_panel.patches]
    # validation − training loss, and training − validation accuracy in points
    assert widths == pytest.approx([0.9 - 0.05, 0.6 - 0.25], rel=1e-12)
    errors = [patch.get_width() for patch in error_panel.patches]
    assert errors == pytest.approx([100 * (1.0 - 0.7), 100 * (0.95 - 0.8)], rel=1e-12)
    given = Figure()
    assert regularize.plot_gaps(ablation, axes=given.subplots(1, 2)) is given

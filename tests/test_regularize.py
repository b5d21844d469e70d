"""`keras-optnotes regularize`: the quick run's files, the robust gap ordering, bad input."""

import csv

import numpy as np
import pytest

from keras_optnotes import cli, data
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
    assert [row["technique"] for row in rows] == list(regularize.TECHNIQUE_NAMES)
    for row in rows:
        train, val = float(row["train loss"]), float(row["val loss"])
        assert np.isfinite(train) and np.isfinite(val)
        assert float(row["gap (val - train)"]) == pytest.approx(val - train, abs=1e-12)
        assert 0.0 <= float(row["val accuracy"]) <= 1.0
        assert 1 <= int(row["epochs run"]) <= regularize.QUICK_EPOCHS
    table = (out / "regularize.md").read_text()
    assert all(f"| {name} |" in table for name in regularize.TECHNIQUE_NAMES)
    assert (out / "regularize.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_scores_are_the_plain_cross_entropy_of_the_trained_model():
    # Independent of the command's scoring code: a float64 NumPy cross-entropy of
    # the probabilities the returned model would give is what the table reports.
    full = data.load("digits", validation_fraction=0.5)
    split = data.Split(
        full.x_train[:30], full.y_train[:30], full.x_val[:50], full.y_val[:50], 10, ""
    )
    model = regularize.build_network(split.input_shape, 10, "none", seed=0)

    def reference(x, y):
        probabilities = model(x, training=False).numpy().astype("float64")
        loss = -np.mean(np.log(probabilities[np.arange(len(y)), y]))
        return loss, np.mean(probabilities.argmax(axis=1) == y)

    train_loss, val_loss, val_accuracy = regularize._score(model, split)
    assert train_loss == pytest.approx(reference(split.x_train, split.y_train)[0])
    assert val_loss == pytest.approx(reference(split.x_val, split.y_val)[0])
    assert val_accuracy == pytest.approx(reference(split.x_val, split.y_val)[1])


@pytest.mark.slow
def test_regularizers_shrink_the_gap_of_the_default_network():
    # The default run (README) has none's gap 0.266 against 0.209 with the L2
    # penalty and 0.221 with early stopping (decoupled weight decay, 0.222, is left
    # out for time). No other ordering is asserted: on this loss gap the stochastic
    # regularizers and the label-mixing ones came out larger than none.
    split = data.load("digits", validation_fraction=regularize.VALIDATION_FRACTION)
    results = regularize.run_ablation(split, ["none", "l2_penalty", "early_stopping"])
    gaps = {r.technique: r.gap for r in results}
    for technique in ("l2_penalty", "early_stopping"):
        assert gaps["none"] > gaps[technique], gaps
    stopped = next(r for r in results if r.technique == "early_stopping")
    assert stopped.epochs_run < regularize.DEFAULT_EPOCHS


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


def test_run_ablation_refuses_unknown_techniques():
    split = data.load("spirals", num_samples=40, validation_fraction=0.5)
    with pytest.raises(ValueError, match="shrinkage"):
        regularize.run_ablation(split, ["shrinkage"])

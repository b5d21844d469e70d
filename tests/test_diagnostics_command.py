"""`keras-optnotes sharpness`: a quick run end to end, and its one-line usage errors.

The file runs under each backend (KERAS_BACKEND=tensorflow, jax, torch), so the quick
run is the command's end-to-end test on each, with every run (SAM, ASAM, LARS, SWA and
Lookahead included). The experiment's own checks are in test_experiments_sharpness.py."""

import csv
import math

import keras
import pytest

from keras_optnotes.cli import main
from keras_optnotes.experiments.sharpness import RUNS, TABLE_COLUMNS


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))


@pytest.mark.slow
def test_quick_run_writes_consistent_report(tmp_path, capsys):
    out = tmp_path / "report"
    status = main(
        [
            "sharpness",
            "--quick",
            "--epochs",
            "1",
            "--measure-samples",
            "32",
            "--trace-samples",
            "2",
            "--large-epochs",
            "2",
            # XLA's compilation costs more than it saves on CPU for TensorFlow; JAX
            # without jit runs op by op; on PyTorch --jit changes nothing.
            "--no-jit" if keras.backend.backend() == "tensorflow" else "--jit",
            "--out",
            str(out),
        ]
    )
    assert status == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "interpolation.csv",
        "interpolation.png",
        "remedies.png",
        "sharpness.csv",
        "sharpness.md",
    ]
    rows = read_csv(out / "sharpness.csv")
    assert [r["solution"] for r in rows] == list(RUNS)
    numeric = [c for c in TABLE_COLUMNS if c not in ("solution", "setting")]
    numeric.remove("λ_max converged")
    for row in rows:
        assert all(math.isfinite(float(row[c])) for c in numeric), row
        assert float(row["λ_max"]) > 0.0
        assert float(row["Keskar sharpness"]) >= 0.0
        assert float(row["loss gap (val - train)"]) == pytest.approx(
            float(row["val loss"]) - float(row["train loss"]), abs=1e-3
        )
    # The stopping rule: every remedy trains as many epochs as the large run.
    large_epochs = rows[1]["epochs"]
    assert [r["epochs"] for r in rows[2:]] == [large_epochs] * 5
    assert [int(r["batch size"]) for r in rows] == [16] + [512] * 6
    line = read_csv(out / "interpolation.csv")
    assert len(line) == 31
    by_alpha = {round(float(r["alpha"]), 6): r for r in line}
    # α = 0 is the small-batch model, α = 1 the large-batch one: the line's ends
    # must equal `model.evaluate` on the same samples, computed independently.
    assert float(by_alpha[0.0]["train_loss"]) == pytest.approx(
        float(rows[0]["train loss"]), rel=1e-4
    )
    assert float(by_alpha[1.0]["train_loss"]) == pytest.approx(
        float(rows[1]["train loss"]), rel=1e-4
    )
    assert float(by_alpha[1.0]["val_loss"]) == pytest.approx(
        float(rows[1]["val loss"]), rel=1e-4
    )
    assert "Keskar sharpness" in capsys.readouterr().out


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--small-batch", "64", "--large-batch", "32"], "--large-batch 32"),
        (["--epsilon", "0"], "--epsilon"),
        (["--trace-samples", "1"], "--trace-samples"),
        (["--dataset", "imagenet"], "--dataset"),
        (["--seed", "-1"], "--seed"),
        (["--runs", "small,adamw"], "--runs 'small,adamw': unknown run 'adamw'"),
        (["--runs", ","], "--runs"),
    ],
)
def test_bad_input_is_one_line_with_status_2(arguments, message, capsys, tmp_path):
    status = main(["sharpness", *arguments, "--out", str(tmp_path)])
    error = capsys.readouterr().err
    assert status == 2
    assert error.count("\n") == 1 and message in error
    if arguments[0] == "--runs":
        assert "accepted: all, or a comma-separated list of " + ", ".join(RUNS) in error


def test_unwritable_output_folder(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert main(["sharpness", "--quick", "--out", str(blocker)]) == 2
    assert "exists and is not a folder" in capsys.readouterr().err

"""`keras-optnotes sharpness`: a quick run end to end, and its one-line usage errors.

The file runs under each backend (KERAS_BACKEND=tensorflow, jax, torch), so the quick
run is the command's end-to-end test on each: small and large, and on PyTorch SAM with
m-sharpness too (the other remedies' trainers are built by the same code). SAM's
quick run through the same `run_sharpness_study` is tutorial 04's on TensorFlow and
the CI's floor job's command on JAX; on those backends a SAM fit traces or compiles
its own step (without SAM this test took 7 s instead of 19 s on TensorFlow, 9 s
instead of 16 s on JAX), and on PyTorch it costs a second. Its JSON is checked against `scipy.stats.t` on the per-seed values it
reports. The experiment's own checks are in test_experiments_sharpness.py."""

import csv
import json

import keras
import numpy as np
import pytest
from scipy import stats

from keras_optnotes.cli import main
from keras_optnotes.commands.sharpness import available_runs
from keras_optnotes.data import load


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))


def _t_interval(values):
    values = np.asarray(values, dtype=np.float64)
    return stats.t.interval(
        0.95, len(values) - 1, loc=values.mean(), scale=stats.sem(values)
    )


@pytest.mark.slow
def test_quick_run_writes_consistent_report(tmp_path, capsys):
    out = tmp_path / "report"
    # LookSAM and the other modes are built by the same code; the fake study of
    # test_experiments_sharpness.py checks their reporting.
    runs = ["small", "large"] + (["sam"] if keras.backend.backend() == "torch" else [])
    status = main(
        [
            "sharpness",
            "--quick",
            "--seeds",
            "2",
            "--runs",
            ",".join(runs),
            "--sam-rhos",
            "0.05",
            "--measure-samples",
            "32",
            "--verbose",
            "0",
            # Keskar's L-BFGS-B maximization is tested in test_diagnostics_landscape.py
            # and is the most expensive measurement of a quick run.
            "--no-keskar",
            "--out",
            str(out),
        ]
        # On TensorFlow and PyTorch --quick's own choice, --no-jit (XLA's compilation
        # of each fresh model costs more than it saves there; on PyTorch it changes
        # nothing). On JAX the compiled step: with the suite's unoptimized XLA
        # compiles (conftest.py) it costs less CPU time than running each op of the
        # step on its own (about 55 s against 62 s here).
        + (["--jit"] if keras.backend.backend() == "jax" else [])
    )
    assert status == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "interpolation.csv",
        "interpolation.png",
        "sharpness.csv",
        "sharpness.json",
        "sharpness.md",
        "sharpness.png",
        "sharpness_differences.png",
        "sharpness_per_seed.csv",
    ]
    data = json.loads((out / "sharpness.json").read_text(encoding="utf-8"))
    split = data["protocol"]["split"]
    # The loader's validation set is the test split; the protocol holds out a fifth
    # of the loader's training set for validation.
    loaded = load("digits", max_samples=256)
    held_out = round(0.2 * len(loaded.x_train))
    sizes = {
        "train": len(loaded.x_train) - held_out,
        "validation": held_out,
        "test": len(loaded.x_val),
    }
    assert split == sizes
    tested = sizes["test"]
    assert data["protocol"]["seeds"] == [0, 1]
    assert data["protocol"]["budget"]["kind"] == "epochs"
    assert list(data["runs"]) == runs
    for run in data["runs"].values():
        accuracy = run["per_seed"]["test_accuracy"]
        assert len(accuracy) == 2
        # An accuracy on the test split is a count over its size.
        assert all(abs(a * tested - round(a * tested)) < 1e-9 for a in accuracy)
        if np.std(accuracy) > 0:
            assert run["test_accuracy"]["ci95"] == pytest.approx(
                _t_interval(accuracy), rel=1e-9
            )
        large = data["runs"]["large"]["per_seed"]["test_loss"]
        loss = run["per_seed"]["test_loss"]
        difference = np.subtract(loss, large)
        if np.std(difference) > 0:
            assert run["difference_vs_large"]["test_loss"]["ci95"] == pytest.approx(
                _t_interval(difference), rel=1e-9
            )
        assert run["config"]["learning_rate"] in run["learning_rate_grid"]
        search = run["search"]
        if search["seeds"]:  # tuned: the grid value of the best mean validation score
            means = np.mean(search["validation_scores"], axis=1)
            assert search["chosen"] == search["candidates"][int(np.argmax(means))]
            assert search["chosen"]["learning_rate"] == run["config"]["learning_rate"]
        assert all(v > 0 for v in run["per_seed"]["lambda_max"])
        # Not measured (--no-keskar): no number stands in for it.
        assert "keskar_sharpness" not in run["per_seed"]
    assert data["runs"]["large"]["config"]["batch_size"] == 128  # --quick's
    if "sam" in runs:
        sam = data["runs"]["sam"]
        assert sam["config"]["batch_size"] == 128
        assert sam["config"]["num_batch_splits"] == 4  # slices of 32
    # α = 0 of the line is seed 0's small-batch solution, α = 1 the large one: the
    # line's ends (loss_along_line) equal the per-seed training losses (the
    # protocol's own float64 cross-entropy) on the same samples.
    line = {round(float(r["alpha"]), 6): r for r in read_csv(out / "interpolation.csv")}
    assert len(line) == 31
    small_train = data["runs"]["small"]["per_seed"]["train_loss"][0]
    large_train = data["runs"]["large"]["per_seed"]["train_loss"][0]
    assert float(line[0.0]["train_loss"]) == pytest.approx(small_train, rel=1e-4)
    assert float(line[1.0]["train_loss"]) == pytest.approx(large_train, rel=1e-4)
    assert float(line[1.0]["test_loss"]) == pytest.approx(
        data["runs"]["large"]["per_seed"]["test_loss"][0], rel=1e-4
    )
    per_seed = read_csv(out / "sharpness_per_seed.csv")
    assert len(per_seed) == 2 * len(runs)
    printed = capsys.readouterr().out
    assert "Significant at 95 %" in printed and "Not significant" in printed


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--small-batch", "64", "--large-batch", "32"], "--large-batch 32"),
        (["--epsilon", "0"], "--epsilon"),
        (["--trace-samples", "1"], "--trace-samples"),
        (["--dataset", "imagenet"], "--dataset"),
        (["--seeds", "1"], "--seeds"),
        (["--slice-size", "64"], "--slice-size"),
        (["--budget", "minutes"], "--budget"),
        (["--runs", "small,adamw"], "--runs 'small,adamw': unknown run 'adamw'"),
        (["--runs", ","], "--runs"),
        (["--runs", "small,sam"], "must include large"),
    ],
)
def test_bad_input_is_one_line_with_status_2(arguments, message, capsys, tmp_path):
    status = main(["sharpness", *arguments, "--out", str(tmp_path)])
    error = capsys.readouterr().err
    assert status == 2
    assert error.count("\n") == 1 and message in error
    if arguments[:2] == ["--runs", "small,adamw"]:
        accepted = ", ".join(available_runs())
        assert "accepted: all, or a comma-separated list of " + accepted in error


def test_unwritable_output_folder(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert main(["sharpness", "--quick", "--out", str(blocker)]) == 2
    assert "exists and is not a folder" in capsys.readouterr().err

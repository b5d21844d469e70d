"""`keras_optnotes.experiments.sharpness`: the argument checks, the run names, the result.

The runs themselves are trained end to end by the command's quick test
(test_diagnostics_command.py), on every backend."""

import pytest

from keras_optnotes.data import Split
from keras_optnotes.experiments import sharpness
from keras_optnotes.experiments.sharpness import (
    RUNS,
    TABLE_COLUMNS,
    BatchSizeComparison,
    SolutionRun,
    check_runs,
    compare_batch_sizes,
)


def test_check_runs_keeps_the_order_of_training():
    assert check_runs(["swa", "large", "small", "swa"]) == ("small", "large", "swa")
    assert check_runs(list(RUNS)) == RUNS
    assert RUNS == ("small", "large", "sam", "asam", "lars", "swa", "lookahead")


@pytest.mark.parametrize("runs", [(), "small", ["small", "adamw"], [None]])
def test_check_runs_rejects(runs):
    with pytest.raises(ValueError, match="Argument `runs`.*accepted: small, large"):
        check_runs(runs)


def _tiny_split():
    import numpy as np

    x = np.zeros((8, 4), "float32")
    y = np.arange(8) % 2
    return Split(x_train=x, y_train=y, x_val=x, y_val=y, num_classes=2, name="tiny")


@pytest.mark.parametrize(
    "keywords, message",
    [
        ({"runs": ["small", "sgd"]}, "runs.*'sgd'"),
        ({"small_batch": 0}, "small_batch=0"),
        ({"small_batch": 32, "large_batch": 32}, "large_batch=32"),
        ({"epochs": 1.5}, "epochs=1.5"),
        ({"large_epochs": 0}, "large_epochs=0"),
        ({"learning_rate": 0.0}, "learning_rate=0.0"),
        ({"epsilon": float("nan")}, "epsilon=nan"),
        ({"subspace_dim": 0}, "subspace_dim=0"),
        ({"measure_samples": 0}, "measure_samples=0"),
        ({"trace_samples": 1}, r"trace_samples.*>= 2.*trace_samples=1"),
        ({"seed": -1}, "seed=-1"),
        ({"jit_compile": "yes"}, "jit_compile='yes'"),
        ({"keep_models": 1}, "keep_models=1"),
    ],
)
def test_bad_arguments_raise_before_training(keywords, message):
    with pytest.raises(ValueError, match=message):
        compare_batch_sizes(_tiny_split(), **keywords)


def _run(name, train_loss, val_loss, **fields):
    """A `SolutionRun` with made-up measurements; `fields` override them."""
    values = {
        "name": name,
        "setting": sharpness.SETTINGS[name],
        "batch_size": 16 if name == "small" else 512,
        "epochs": 3,
        "train_loss": train_loss,
        "train_accuracy": 0.9,
        "val_loss": val_loss,
        "val_accuracy": 0.8,
        "lambda_max": 2.0,
        "lambda_max_converged": True,
        "hessian_trace": 5.0,
        "trace_standard_error": 0.5,
        "keskar_sharpness": 1.0,
    }
    return SolutionRun(**{**values, **fields})


def test_result_rows():
    result = BatchSizeComparison(
        dataset="tiny",
        train_samples=8,
        measure_samples=8,
        small_batch=16,
        large_batch=512,
        learning_rate=0.003,
        epsilon=1e-3,
        trace_samples=2,
        seed=0,
        runs=(_run("small", 0.25, 0.5), _run("sam", 0.125, 1.0)),
        alphas=(0.0, 1.0),
        train_line=(0.25, 0.75),
        val_line=(0.5, 1.5),
    )
    assert result.get("sam").loss_gap == 0.875
    rows = result.table_rows()
    assert [len(row) for row in rows] == [len(TABLE_COLUMNS)] * 2
    assert rows[0][TABLE_COLUMNS.index("loss gap (val - train)")] == 0.25
    assert rows[1][:4] == ["sam", "SAM rho=0.05 around Adam", 512, 3]
    assert result.interpolation_rows() == [(0.0, 0.25, 0.5), (1.0, 0.75, 1.5)]
    assert dict(result.models) == {}  # kept only with keep_models=True
    with pytest.raises(KeyError, match="'lars' was not run; runs: small, sam"):
        result.get("lars")


# --------------------------------------------------------------------------------------
# The study on the evidence protocol: its grids, its checks, its JSON.

import math  # noqa: E402

import numpy as np  # noqa: E402
from scipy import stats  # noqa: E402

from keras_optnotes.experiments import protocol  # noqa: E402
from keras_optnotes.experiments.sharpness import (  # noqa: E402
    STUDY_COLUMNS,
    STUDY_RUNS,
    SharpnessStudy,
    StudySettings,
    check_study_runs,
    run_sharpness_study,
)


def test_grids_follow_each_method_s_convention():
    settings = StudySettings(small_batch=16, large_batch=512, grid_size=3)
    root10 = math.sqrt(10.0)
    # Adam: 1e-3 at batch 16, moved by the square-root rule, ×/÷ √10 around it.
    for name, batch in (("small", 16), ("large", 512), ("swa", 512)):
        centre = 1e-3 * math.sqrt(batch / 16)
        np.testing.assert_allclose(
            settings.learning_rate_grid(name),
            [centre / root10, centre, centre * root10],
            rtol=1e-14,
        )
    # LARS: its own global rate, 3 / √10 … 3 √10 (about 1 to 10).
    np.testing.assert_allclose(
        settings.learning_rate_grid("lars"), [3 / root10, 3.0, 3 * root10], rtol=1e-14
    )
    lars = settings.fixed("lars")
    assert (lars["trust_coefficient"], lars["weight_decay"]) == (0.001, 5e-4)
    # SAM: ρ crossed with the learning rates; 16 slices of 32 samples.
    assert len(settings.candidates("sam")) == 3 * len(settings.sam_rhos)
    sam = settings.fixed("sam")
    assert (sam["num_batch_splits"], sam["slice_size"], sam["batch_size"]) == (
        16, 32, 512,
    )  # fmt: skip
    assert settings.fixed("looksam")["looksam_alpha"] == 0.7
    assert settings.fixed("small")["batch_size"] == 16


def test_check_study_runs():
    assert check_study_runs(["looksam", "sam", "large"]) == ("large", "sam", "looksam")
    assert STUDY_RUNS[-2:] == ("sam_interval", "looksam")
    with pytest.raises(ValueError, match="include 'large'"):
        check_study_runs(["small", "sam"])
    with pytest.raises(ValueError, match="without 'sam'"):
        check_study_runs(["large", "looksam"])
    with pytest.raises(ValueError, match="unknown run 'sgd'"):
        check_study_runs(["large", "sgd"])


@pytest.mark.parametrize(
    "keywords, message",
    [
        ({"seeds": 1}, "seeds=1"),
        ({"tuning_seeds": 0}, "tuning_seeds=0"),
        ({"budget": ("minutes", 3)}, "kind='minutes'"),
        ({"budget": 5}, "budget=5"),
        ({"small_batch": 64, "large_batch": 32}, "large_batch=32"),
        ({"slice_size": 64}, "slice_size=64"),
        ({"grid_size": 2}, "grid_size=2"),
        ({"sam_rhos": ()}, "sam_rhos"),
        ({"sam_rhos": (0.05, -1.0)}, "sam_rhos=-1.0"),
        ({"keskar": "no"}, "keskar='no'"),
        ({"runs": ("small",)}, "include 'large'"),
    ],
)
def test_study_bad_arguments_raise_before_training(keywords, message):
    with pytest.raises(ValueError, match=message):
        run_sharpness_study(_tiny_split(), **keywords)


def _fake_study():
    """A `SharpnessStudy` around a hand-built protocol result with made-up values."""
    settings = StudySettings(budget=protocol.Budget("epochs", 60), keskar=False)
    seeds = protocol.make_seeds(4, tuning=2)
    values = {
        "large": [0.90, 0.92, 0.91, 0.89],
        "small": [0.95, 0.96, 0.94, 0.97],
        "sam": [0.93, 0.92, 0.95, 0.90],
        "looksam": [0.92, 0.92, 0.93, 0.91],
    }
    arms = []
    for name, accuracy in values.items():
        candidates = tuple(
            {"learning_rate": lr} for lr in settings.learning_rate_grid(name)
        )
        search = protocol.GridSearch(
            candidates, seeds.tuning, ((0.5, 0.6), (0.9, 0.7), (0.7, 0.8)), 2
        )
        per_seed = {
            "test_accuracy": tuple(accuracy),
            "test_loss": tuple(1.0 - a for a in accuracy),
            "lambda_max": (10.0, 12.0, float("nan"), 11.0),
            "hessian_trace": (100.0, 90.0, 95.0, 105.0),
        }
        config = {**settings.fixed(name), **search.best}
        arms.append(protocol.ArmResult(name, config, search, seeds.report, per_seed))
    result = protocol.ProtocolResult(
        "digits",
        {"train": 1150, "validation": 288, "test": 359},
        seeds,
        settings.budget,
        tuple(arms),
        "large",
    )
    return SharpnessStudy(settings, result, seconds=12.0), values


def test_study_json_has_the_issue_schema_and_scipy_intervals():
    study, values = _fake_study()
    data = study.to_dict()
    assert data["protocol"]["dataset"] == "digits"
    assert data["protocol"]["split"] == {"train": 1150, "validation": 288, "test": 359}
    assert data["protocol"]["seeds"] == [0, 1, 2, 3]
    assert data["protocol"]["budget"]["kind"] == "epochs"
    assert data["protocol"]["budget"]["steps"]["large"] == 60 * 3
    assert data["protocol"]["budget"]["steps"]["small"] == 60 * 72
    sam = data["runs"]["sam"]
    assert sam["config"]["batch_size"] == 512
    assert sam["config"]["num_batch_splits"] == 16
    assert sam["config"]["learning_rate"] == sam["learning_rate_grid"][2]
    assert len(sam["learning_rate_grid"]) == 3
    assert sam["per_seed"]["test_accuracy"] == values["sam"]
    a = np.array(values["sam"])
    low, high = stats.t.interval(0.95, 3, loc=a.mean(), scale=stats.sem(a))
    assert sam["test_accuracy"]["mean"] == pytest.approx(a.mean(), rel=1e-14)
    assert sam["test_accuracy"]["ci95"] == pytest.approx([low, high], rel=1e-12)
    d = a - np.array(values["large"])
    low, high = stats.t.interval(0.95, 3, loc=d.mean(), scale=stats.sem(d))
    assert sam["difference_vs_large"]["test_accuracy"]["ci95"] == pytest.approx(
        [low, high], rel=1e-12
    )
    # The cheaper SAM mode is compared with SAM as well, paired.
    d = np.array(values["looksam"]) - a
    low, high = stats.t.interval(0.95, 3, loc=d.mean(), scale=stats.sem(d))
    assert data["runs"]["looksam"]["difference_vs_sam"]["test_accuracy"][
        "ci95"
    ] == pytest.approx([low, high], rel=1e-12)
    # A diverged seed's NaN is left out of the interval, not turned into a number.
    finite = [10.0, 12.0, 11.0]
    assert sam["lambda_max"]["n"] == 3
    assert sam["lambda_max"]["mean"] == pytest.approx(np.mean(finite), rel=1e-14)
    assert sam["grid_edge"] is True  # the chosen rate is the grid's largest


def test_study_table_rows():
    study, values = _fake_study()
    rows = study.table_rows()
    assert [len(row) for row in rows] == [len(STUDY_COLUMNS)] * 4
    by_name = {row[0]: row for row in rows}
    column = STUDY_COLUMNS.index("test accuracy % [95% CI]")
    a = np.array(values["small"]) * 100
    low, high = stats.t.interval(0.95, 3, loc=a.mean(), scale=stats.sem(a))
    assert by_name["small"][column] == f"{a.mean():.2f} [{low:.2f}, {high:.2f}]"
    assert by_name["looksam"][column + 1].endswith("(vs sam)")
    setting = STUDY_COLUMNS.index("setting")
    assert by_name["large"][setting] == "Adam"
    assert by_name["looksam"][setting] == (
        "Adam; num_batch_splits=16, slice_size=32, adaptive=False, interval=5, "
        "looksam_alpha=0.7"
    )


def test_study_figures_return_the_figure_and_draw_into_given_axes(
    tmp_path, monkeypatch
):
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    from keras_optnotes.commands.sharpness import plot_differences, plot_summary

    monkeypatch.chdir(tmp_path)  # a file written by mistake would show here
    study, values = _fake_study()
    figure = plot_summary(study)
    assert len(figure.axes) == 3 and list(tmp_path.iterdir()) == []

    def centres(panel):  # the error bars' centres, by x position
        return {
            int(line.get_xdata()[0]): float(line.get_ydata()[0])
            for line in panel.get_lines()
            if line.get_marker() == "o"
        }

    names = list(study.runs)
    accuracy = centres(figure.axes[0])
    for name in names:
        expected = 100 * np.mean(values[name])
        assert accuracy[names.index(name)] == pytest.approx(expected, rel=1e-12)
    given = Figure()
    panels = given.subplots(1, 2)
    assert plot_differences(study, axes=panels, title="t") is given
    differences = centres(panels[0])
    others = [name for name in names if name != "large"]
    sam = 100 * np.mean(np.subtract(values["sam"], values["large"]))
    assert differences[others.index("sam")] == pytest.approx(sam, rel=1e-12)
    looksam = 100 * np.mean(np.subtract(values["looksam"], values["sam"]))
    assert differences[others.index("looksam")] == pytest.approx(looksam, rel=1e-12)
    with pytest.raises(ValueError, match="`axes` must be 2 matplotlib Axes"):
        plot_differences(study, axes=panels[0])
    plot_summary(study, tmp_path / "summary.png")
    assert (tmp_path / "summary.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("name", ["sam_interval", "looksam"])
def test_cheaper_sam_modes_tune_their_rate_around_sams_choice(name):
    settings = StudySettings(budget=protocol.Budget("epochs", 5), keskar=False)
    seeds = protocol.make_seeds(2, tuning=1)
    arm = sharpness._study_arm(name, settings, seeds, {})
    search = protocol.GridSearch(
        ({"learning_rate": 0.01, "rho": 0.1},), seeds.tuning, ((0.9,),), 0
    )
    done = {"sam": protocol.ArmResult("sam", {}, search, seeds.report, {})}
    grid = arm.candidates(done)
    assert [c["rho"] for c in grid] == [0.1, 0.1, 0.1]
    expected = [0.01 / math.sqrt(10), 0.01, 0.01 * math.sqrt(10)]
    assert [c["learning_rate"] for c in grid] == pytest.approx(expected, rel=1e-15)

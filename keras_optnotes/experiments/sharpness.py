"""Small-batch against large-batch minima (Keskar et al. 2017), and the remedies.

The same network (`keras_optnotes.models.build_classifier`) trains from the same
initial weights in up to seven runs:

- `small`: Adam(η) with the small batch for `epochs` epochs;
- `large`: Adam(η) with the large batch until its epoch's training loss is at most
  the small batch's final one (at most `large_epochs` epochs): as in Keskar et al.,
  the two minima are compared at the same training loss, not after the same steps;
- the remedies, all with the large batch: `sam` (Foret et al. 2021, ρ = 0.05) and
  `asam` (Kwon et al. 2021, ρ = 0.5, η_ASAM = 0.01), both around Adam(η); `lars`
  (You et al. 2017, trust coefficient 0.001, momentum 0.9) at the small batch's η
  scaled by the linear rule (Goyal et al. 2017) to the large batch, reached by a
  linear warm-up over 5 epochs and then cosine-decayed to 0 (Keras' `CosineDecay`);
  `swa` (Izmailov et al. 2018): Adam(η), the weights averaged at the end of every
  epoch from 75 % of the run on; `lookahead` (Zhang et al. 2019, k = 5, α = 0.5)
  around Adam(η).

Every setting is its paper's default; none was tuned on this experiment's results.

The stopping rule of the remedies: each trains for exactly as many epochs as the
`large` run took to reach the small batch's training loss (the same number of
optimizer steps and the same data; SAM and ASAM spend two gradients per step). A
fixed budget is the only rule under which SWA's averaging window and LARS' schedule
are defined before training starts, and it asks of each remedy what a user gets for
the large batch's cost. Their training losses therefore differ from the small
batch's; the table shows them. Without a `large` run the remedies train for
`large_epochs` epochs (default 10 · `epochs`); without a `small` run `large` does
too.

Each solution is then measured the same way, on a fixed subset of the training set
(its first `measure_samples` samples) and with `training=False`: loss and accuracy
there and on the validation set, the Hessian's top eigenvalue λ_max (power
iteration), its trace (Hutchinson, with standard error) and Keskar's ε-sharpness.
When both `small` and `large` ran, the loss along f((1 − α) θ_small + α θ_large) on
that subset and on the validation set (Keskar's Figure 3) is evaluated too.
`keras-optnotes sharpness` is this experiment with a command line, a table, CSV
files and two figures.

Example:

>>> from keras_optnotes import data  # doctest: +SKIP
>>> from keras_optnotes.experiments.sharpness import compare_batch_sizes
>>> result = compare_batch_sizes(data.load("digits"), runs=("small", "large", "sam"))
>>> result.get("sam").lambda_max, result.get("large").loss_gap
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar

from keras_optnotes.checks import check_bool, check_integer, check_positive
from keras_optnotes.experiments._common import Progress, RunsResult
from keras_optnotes.experiments.protocol import (
    EDGE_EXTENSIONS,
    describe_setting,
    finite_interval,
)

if TYPE_CHECKING:
    from keras_optnotes.data import Split

DEFAULT_SMALL_BATCH = 16
DEFAULT_LARGE_BATCH = 512
DEFAULT_EPOCHS = 30
DEFAULT_LEARNING_RATE = 0.003
DEFAULT_EPSILON = 1e-3
DEFAULT_MEASURE_SAMPLES = 512
DEFAULT_TRACE_SAMPLES = 20
ALPHAS = tuple(-1.0 + 0.1 * i for i in range(31))  # −1 … 2, as in Keskar's Figure 3

# The remedies' settings: each paper's default (see the module docstring).
SAM_RHO = 0.05
ASAM_RHO = 0.5
ASAM_ETA = 0.01
LARS_TRUST_COEFFICIENT = 0.001
LARS_MOMENTUM = 0.9
LARS_WARMUP_EPOCHS = 5
SWA_START_FRACTION = 0.75
LOOKAHEAD_SYNC_PERIOD = 5
LOOKAHEAD_SLOW_STEP_SIZE = 0.5

RUNS = ("small", "large", "sam", "asam", "lars", "swa", "lookahead")
REMEDIES = RUNS[2:]
SETTINGS = {
    "small": "Adam",
    "large": "Adam, until the small batch's training loss",
    "sam": f"SAM rho={SAM_RHO:g} around Adam",
    "asam": f"ASAM rho={ASAM_RHO:g} eta={ASAM_ETA:g} around Adam",
    "lars": f"LARS tc={LARS_TRUST_COEFFICIENT:g} m={LARS_MOMENTUM:g}, linear scaling, "
    f"{LARS_WARMUP_EPOCHS}-epoch warm-up, cosine",
    "swa": f"Adam, SWA from {SWA_START_FRACTION:.0%} of the epochs",
    "lookahead": f"Lookahead k={LOOKAHEAD_SYNC_PERIOD} "
    f"alpha={LOOKAHEAD_SLOW_STEP_SIZE:g} around Adam",
}

TABLE_COLUMNS = (
    "solution",
    "setting",
    "batch size",
    "epochs",
    "train loss",
    "train accuracy",
    "val loss",
    "val accuracy",
    "loss gap (val - train)",
    "λ_max",
    "λ_max converged",
    "Hessian trace",
    "trace std. error",
    "Keskar sharpness",
)
INTERPOLATION_COLUMNS = ("alpha", "train_loss", "val_loss")


def check_runs(runs: Sequence[str]) -> tuple[str, ...]:
    """The names of `RUNS` that `runs` lists, in the order of `RUNS`.

    That order is the order of training: `large` needs the small batch's loss, the
    remedies the large run's epochs.

    Raises:
        ValueError: `runs` is empty, not a sequence of strings, or names a run not in
            `RUNS`.
    """
    if isinstance(runs, str) or not isinstance(runs, Sequence) or not runs:
        raise ValueError(
            "Argument `runs` must be a non-empty sequence of run names; accepted: "
            f"{', '.join(RUNS)}. Received: runs={runs!r}"
        )
    for name in runs:
        if name not in RUNS:
            raise ValueError(
                f"Argument `runs` names an unknown run {name!r}; accepted: "
                f"{', '.join(RUNS)}. Received: runs={runs!r}"
            )
    return tuple(name for name in RUNS if name in runs)


@dataclass(frozen=True)
class SolutionRun:
    """One trained solution and its measurements.

    Attributes:
        name: the run, one of `RUNS`.
        setting: its optimizer and remedy, in words.
        batch_size: the batch size it trained with.
        epochs: epochs trained.
        train_loss: loss on the measurement subset (`training=False`).
        train_accuracy: accuracy on the measurement subset.
        val_loss: loss on the validation set.
        val_accuracy: accuracy on the validation set.
        lambda_max: the Hessian's top eigenvalue on the measurement subset.
        lambda_max_converged: whether the power iteration converged.
        hessian_trace: Hutchinson's estimate of the Hessian's trace.
        trace_standard_error: its standard error.
        keskar_sharpness: Keskar's ε-sharpness, in percent.
    """

    name: str
    setting: str
    batch_size: int
    epochs: int
    train_loss: float
    train_accuracy: float
    val_loss: float
    val_accuracy: float
    lambda_max: float
    lambda_max_converged: bool
    hessian_trace: float
    trace_standard_error: float
    keskar_sharpness: float

    @property
    def loss_gap(self) -> float:
        """`val_loss - train_loss`: the generalization gap the figures show."""
        return self.val_loss - self.train_loss

    def table_row(self) -> list:
        """The row of `TABLE_COLUMNS` for this run."""
        return [
            self.name,
            self.setting,
            self.batch_size,
            self.epochs,
            self.train_loss,
            self.train_accuracy,
            self.val_loss,
            self.val_accuracy,
            self.loss_gap,
            self.lambda_max,
            self.lambda_max_converged,
            self.hessian_trace,
            self.trace_standard_error,
            self.keskar_sharpness,
        ]


@dataclass(frozen=True)
class BatchSizeComparison(RunsResult):
    """The result of `compare_batch_sizes`: the settings and one run per solution.

    Attributes:
        dataset: the split's name.
        train_samples: training samples.
        measure_samples: training samples the measurements used.
        small_batch: the small batch size.
        large_batch: the large batch size (every run but `small`).
        learning_rate: Adam's η, and LARS' before scaling.
        epsilon: the ε of Keskar's sharpness.
        trace_samples: Rademacher vectors of the trace.
        seed: seed of the weights, the batch order and the measurements' draws.
        runs: one `SolutionRun` per run, in the order run.
        alphas: the positions α of the interpolation; empty unless both `small`
            and `large` ran.
        train_line: loss on the measurement subset at each α.
        val_line: loss on the validation set at each α.
        models: the trained `keras.Model` of each run, by name, with
            `keep_models=True`; empty otherwise (the models are large next to the
            measurements, and a result should not hold a backend's tensors unasked).
            Not part of the comparison of two results.

    `get(name)` is one run, `table_rows()` the rows of `TABLE_COLUMNS`,
    `interpolation_rows()` those of `INTERPOLATION_COLUMNS`.
    """

    dataset: str
    train_samples: int
    measure_samples: int
    small_batch: int
    large_batch: int
    learning_rate: float
    epsilon: float
    trace_samples: int
    seed: int
    runs: tuple[SolutionRun, ...]
    alphas: tuple[float, ...]
    train_line: tuple[float, ...]
    val_line: tuple[float, ...]
    models: Mapping[str, Any] = field(
        default_factory=lambda: MappingProxyType({}), repr=False, compare=False
    )
    _run_name: ClassVar[str] = "name"

    def interpolation_rows(self) -> list[tuple[float, float, float]]:
        """One `(alpha, train_loss, val_loss)` row per position of the line."""
        return list(zip(self.alphas, self.train_line, self.val_line))


def _stop_at_loss(target: float):
    import keras

    class StopAtLoss(keras.callbacks.Callback):
        """Stops `fit` at the end of the first epoch whose training loss ≤ target."""

        def on_epoch_end(self, epoch, logs=None):
            if logs and logs.get("loss", float("inf")) <= target:
                self.model.stop_training = True

    return StopAtLoss()


def _check_batch_sizes(small_batch, large_batch) -> tuple[int, int]:
    """`(small_batch, large_batch)`, integers ≥ 1 with the large one larger."""
    small_batch = check_integer("small_batch", small_batch, 1)
    large_batch = check_integer("large_batch", large_batch, 1)
    if large_batch <= small_batch:
        raise ValueError(
            "Argument `large_batch` must be larger than `small_batch` "
            f"({small_batch}). Received: large_batch={large_batch!r}"
        )
    return small_batch, large_batch


def compare_batch_sizes(
    split: Split,
    *,
    runs: Sequence[str] = RUNS,
    small_batch: int = DEFAULT_SMALL_BATCH,
    large_batch: int = DEFAULT_LARGE_BATCH,
    epochs: int = DEFAULT_EPOCHS,
    large_epochs: int | None = None,
    learning_rate: float = DEFAULT_LEARNING_RATE,
    epsilon: float = DEFAULT_EPSILON,
    subspace_dim: int | None = None,
    measure_samples: int = DEFAULT_MEASURE_SAMPLES,
    trace_samples: int = DEFAULT_TRACE_SAMPLES,
    seed: int = 0,
    jit_compile: bool = True,
    keep_models: bool = False,
    verbose: int | str = 0,
    progress: Progress | None = None,
) -> BatchSizeComparison:
    """Trains the small-batch, large-batch and remedy solutions and measures each.

    Every run starts from the weights of `build_classifier(..., seed=seed)`, with the
    global seed reset to `seed` before each `fit`; the runs, their stopping rule and
    the measurements are described in the module docstring. `jit_compile=False`
    turns XLA off for the train step and the optimizer, and keeps it off the
    Hessian-vector products, which otherwise use it on a GPU or TPU
    (`HessianOperator`).

    Args:
        split: the data (`keras_optnotes.data.load`).
        runs: which of `RUNS` to train; they train in the order of `RUNS`.
        small_batch: batch size of `small`, ≥ 1.
        large_batch: batch size of every other run, > `small_batch`.
        epochs: epochs of `small`, ≥ 1.
        large_epochs: at most this many epochs of `large` (≥ 1; default 10 ·
            `epochs`).
        learning_rate: Adam's η (> 0), and the base η of LARS' linear scaling.
        epsilon: the box size of Keskar's sharpness, > 0.
        subspace_dim: measure Keskar's sharpness in a random subspace of this
            dimension (≥ 1), or `None` for the full space.
        measure_samples: training samples the measurements use, ≥ 1.
        trace_samples: Rademacher vectors of the trace, ≥ 2.
        seed: seed of the weights, the batch order and the draws, ≥ 0.
        jit_compile: XLA for the train step and the optimizers.
        keep_models: keep the trained models in the result's `models` (to draw
            their loss surfaces, say).
        verbose: passed to `model.fit`.
        progress: called with one line as each run starts.

    Returns:
        A `BatchSizeComparison`.

    Raises:
        ValueError: an argument out of range, before any training.
    """
    runs = check_runs(runs)
    small_batch, large_batch = _check_batch_sizes(small_batch, large_batch)
    epochs = check_integer("epochs", epochs, 1)
    if large_epochs is not None:
        large_epochs = check_integer("large_epochs", large_epochs, 1)
    learning_rate = check_positive("learning_rate", learning_rate)
    epsilon = check_positive("epsilon", epsilon)
    if subspace_dim is not None:
        subspace_dim = check_integer("subspace_dim", subspace_dim, 1)
    measure_samples = check_integer("measure_samples", measure_samples, 1)
    trace_samples = check_integer("trace_samples", trace_samples, 2)
    seed = check_integer("seed", seed, 0)
    jit_compile = check_bool("jit_compile", jit_compile)
    keep_models = check_bool("keep_models", keep_models)

    from keras_optnotes.diagnostics._backend import check_backend
    from keras_optnotes.diagnostics.sharpness import _import_scipy_optimize

    # What the measurements need, checked before any training.
    check_backend("keras-optnotes sharpness's measurements")
    _import_scipy_optimize()
    settings = _Single(
        small_batch, large_batch, epochs, large_epochs or 10 * epochs, learning_rate,
        seed, jit_compile, verbose,
    )  # fmt: skip
    models, used = _train_solutions(split, runs, settings, progress)
    subset = (split.x_train[:measure_samples], split.y_train[:measure_samples])
    measured = [
        _measure_single(
            name,
            model,
            split,
            subset,
            settings,
            used[name],
            trace_samples,
            epsilon,
            subspace_dim,
        )  # fmt: skip
        for name, model in models.items()
    ]
    alphas, train_line, val_line = (), (), ()
    if "small" in models and "large" in models:
        alphas = ALPHAS
        train_line, val_line = (
            _loss_line(models["small"], models["large"], data)
            for data in (subset, (split.x_val, split.y_val))
        )
    return BatchSizeComparison(
        dataset=split.name,
        train_samples=len(split.x_train),
        measure_samples=len(subset[0]),
        small_batch=small_batch,
        large_batch=large_batch,
        learning_rate=learning_rate,
        epsilon=epsilon,
        trace_samples=trace_samples,
        seed=seed,
        runs=tuple(measured),
        alphas=alphas,
        train_line=train_line,
        val_line=val_line,
        models=MappingProxyType(dict(models) if keep_models else {}),
    )


@dataclass(frozen=True)
class _Single:
    """What every run of `compare_batch_sizes` shares."""

    small_batch: int
    large_batch: int
    epochs: int
    large_budget: int  # the most epochs of `large`
    learning_rate: float
    seed: int
    jit_compile: bool
    verbose: int | str


def _train_solutions(split, runs, settings, progress):
    """Step 1 of `compare_batch_sizes`: trains each run from the same weights, in
    order; returns the models by name and the epochs each trained.

    `large` stops at the small batch's final training loss; the remedies train as
    many epochs as `large` did."""
    import keras

    from keras_optnotes.models import build_classifier

    keras.utils.set_random_seed(settings.seed)
    base = build_classifier(split.input_shape, split.num_classes, seed=settings.seed)
    initial_weights = base.get_weights()
    target, models, used = None, {}, {}
    for index, name in enumerate(runs, start=1):
        if progress is not None:
            progress(f"[{index}/{len(runs)}] {name}: {SETTINGS[name]}")
        model = keras.models.clone_model(base)
        model.set_weights(initial_weights)
        if name == "small":
            run_epochs, callbacks = settings.epochs, []
        elif name == "large":
            run_epochs = settings.large_budget
            callbacks = [] if target is None else [_stop_at_loss(target)]
        else:
            run_epochs = used.get("large", settings.large_budget)
            callbacks = []
        history = _fit_single(name, model, split, run_epochs, callbacks, settings)
        if name == "small":
            target = history.history["loss"][-1]
        used[name] = len(history.history["loss"])
        models[name] = model
    return models, used


def _fit_single(name, model, split, epochs, callbacks, settings):
    """Compiles run `name`'s trainer and fits it; the model is left compiled for the
    measurements. Returns Keras' `History`."""
    import keras

    trainer, optimizer, extra = _remedy(
        name,
        model,
        epochs,
        len(split.x_train),
        settings.small_batch,
        settings.large_batch,
        settings.learning_rate,
        settings.jit_compile,
    )
    # `jit_compile` is XLA: on PyTorch (no XLA) the train step runs eagerly, not
    # through torch.compile.
    compiled = {
        "loss": "sparse_categorical_crossentropy",
        "metrics": ["accuracy"],
        "jit_compile": settings.jit_compile and keras.backend.backend() != "torch",
    }
    trainer.compile(optimizer=optimizer, **compiled)
    keras.utils.set_random_seed(settings.seed)
    history = trainer.fit(
        split.x_train,
        split.y_train,
        batch_size=settings.small_batch if name == "small" else settings.large_batch,
        epochs=epochs,
        verbose=settings.verbose,
        callbacks=callbacks + extra,
    )
    if trainer is not model:  # SAM's wrapper: the inner model is measured
        model.compile(**compiled)
    return history


def _measure_single(
    name, model, split, subset, settings, epochs, trace_samples, epsilon, subspace_dim
) -> SolutionRun:
    """Step 2 of `compare_batch_sizes`: one solution's losses and sharpness."""
    from keras_optnotes import diagnostics

    jit = None if settings.jit_compile else False
    train = model.evaluate(*subset, verbose=0, return_dict=True)
    val = model.evaluate(split.x_val, split.y_val, verbose=0, return_dict=True)
    eigen = diagnostics.hessian_top_eigenvalues(
        model, subset, max_iterations=20, jit_compile=jit, verbose=0
    )
    trace = diagnostics.hessian_trace(
        model, subset, samples=trace_samples, jit_compile=jit, verbose=0
    )
    keskar = diagnostics.keskar_sharpness(
        model,
        subset,
        epsilon=epsilon,
        subspace_dim=subspace_dim,
        seed=settings.seed,
        verbose=0,
    )
    return SolutionRun(
        name=name,
        setting=SETTINGS[name],
        batch_size=settings.small_batch if name == "small" else settings.large_batch,
        epochs=epochs,
        train_loss=float(train["loss"]),
        train_accuracy=float(train["accuracy"]),
        val_loss=float(val["loss"]),
        val_accuracy=float(val["accuracy"]),
        lambda_max=float(eigen.top),
        lambda_max_converged=bool(eigen.converged),
        hessian_trace=float(trace.trace),
        trace_standard_error=float(trace.standard_error),
        keskar_sharpness=float(keskar.sharpness),
    )


def _loss_line(small, large, data) -> tuple[float, ...]:
    """Step 3: the loss along (1 − α) θ_small + α θ_large at `ALPHAS` on `data`."""
    from keras_optnotes import diagnostics

    line = diagnostics.loss_along_line(
        small, data, other_weights=large, alphas=ALPHAS, verbose=0
    )
    return tuple(float(v) for v in line.losses)


def _remedy(
    name, model, epochs, train_samples, small_batch, large_batch, learning_rate, jit
):
    """What trains `model` for run `name`: (the model to fit, its optimizer, callbacks)."""
    import keras

    from keras_optnotes import callbacks, optimizers
    from keras_optnotes.training import SharpnessAwareMinimization

    def adam():
        return optimizers.Adam(learning_rate=learning_rate, jit_compile=jit)

    if name in ("small", "large"):
        return model, adam(), []
    if name == "sam":
        return SharpnessAwareMinimization(model, rho=SAM_RHO), adam(), []
    if name == "asam":
        sam = SharpnessAwareMinimization(
            model, rho=ASAM_RHO, adaptive=True, eta=ASAM_ETA
        )
        return sam, adam(), []
    if name == "lars":
        steps_per_epoch = math.ceil(train_samples / large_batch)
        # The warm-up takes at most half of a short run.
        warmup_steps = max(1, min(LARS_WARMUP_EPOCHS, epochs // 2) * steps_per_epoch)
        schedule = keras.optimizers.schedules.CosineDecay(
            0.0,
            decay_steps=max(1, epochs * steps_per_epoch - warmup_steps),
            warmup_target=optimizers.scaled_learning_rate(
                learning_rate, small_batch, large_batch, rule="linear"
            ),
            warmup_steps=warmup_steps,
        )
        lars = optimizers.LARS(
            schedule,
            momentum=LARS_MOMENTUM,
            trust_coefficient=LARS_TRUST_COEFFICIENT,
            jit_compile=jit,
        )
        return model, lars, []
    if name == "swa":
        # build_classifier has no batch normalization: no statistics to recompute.
        swa = callbacks.StochasticWeightAveraging(
            start_epoch=min(epochs - 1, int(SWA_START_FRACTION * epochs))
        )
        return model, adam(), [swa]
    if name == "lookahead":
        lookahead = optimizers.Lookahead(
            adam(),
            sync_period=LOOKAHEAD_SYNC_PERIOD,
            slow_step_size=LOOKAHEAD_SLOW_STEP_SIZE,
        )
        return model, lookahead, []
    raise AssertionError(name)  # check_runs let an unknown name through


# ======================================================================================
# The same question on the evidence protocol (`keras_optnotes.experiments.protocol`):
# every run tuned on validation, reported on fresh seeds on a held-out test split.

CHEAP_SAM_RUNS = ("sam_interval", "looksam")
# The study's order: the baselines, the cheap remedies, then SAM and its modes (the
# costly runs last, so that a long run's partial results hold the most runs).
STUDY_RUNS = (
    "small", "large", "lars", "swa", "lookahead", "sam", "asam", *CHEAP_SAM_RUNS,
)  # fmt: skip
DEFAULT_SEEDS = 8
DEFAULT_TUNING_SEEDS = 2
DEFAULT_BUDGET = ("epochs", 60)
DEFAULT_SLICE_SIZE = 32
DEFAULT_GRID_SIZE = 3
# Adam's grid is centred on 1e-3 at the default small batch of 16, moved to each
# batch size by the square-root rule (Malladi et al. 2022 for adaptive methods); LARS' on 3 (You et al.
# use global rates of order 1-30 with trust coefficient 0.001).
ADAM_BASE_LEARNING_RATE = 1e-3
ADAM_BASE_BATCH = 16
LARS_LEARNING_RATE = 3.0
LARS_WEIGHT_DECAY = 5e-4  # You et al. 2017's AlexNet-BN setting
SAM_RHOS = (0.05, 0.1)
SAM_INTERVAL = 5
LOOKSAM_ALPHA = 0.7  # Liu et al. 2022's α
STUDY_METRICS = (
    "test_accuracy",
    "test_loss",
    "validation_accuracy",
    "train_loss",
    "train_accuracy",
    "loss_gap",
    "lambda_max",
    "hessian_trace",
    "keskar_sharpness",
)
STUDY_COLUMNS = (
    "run",
    "batch size",
    "learning rate",
    "setting",
    "test accuracy % [95% CI]",
    "Δ test accuracy vs large, points [95% CI]",
    "test loss [95% CI]",
    "Δ test loss vs large [95% CI]",
    "λ_max [95% CI]",
    "Hessian trace [95% CI]",
    "Keskar sharpness % [95% CI]",
    "grid edge",
)
PER_SEED_COLUMNS = ("run", "seed", *STUDY_METRICS)


def sam_supports_interval() -> bool:
    """Whether `SharpnessAwareMinimization` takes `interval` and `looksam_alpha`
    (the cheaper SAM modes `sam_interval` and `looksam` need them)."""
    import inspect

    from keras_optnotes.training import SharpnessAwareMinimization

    parameters = inspect.signature(SharpnessAwareMinimization.__init__).parameters
    return "interval" in parameters and "looksam_alpha" in parameters


def check_study_runs(runs: Sequence[str]) -> tuple[str, ...]:
    """The names of `STUDY_RUNS` that `runs` lists, in the order of `STUDY_RUNS`.

    `sam_interval` and `looksam` take SAM's chosen setting, so they need `sam`.

    Raises:
        ValueError: `runs` is empty, names an unknown run, names a cheaper SAM mode
            without `sam`, or leaves out `large` (the baseline of the differences).
    """
    if isinstance(runs, str) or not isinstance(runs, Sequence) or not runs:
        raise ValueError(
            "Argument `runs` must be a non-empty sequence of run names; accepted: "
            f"{', '.join(STUDY_RUNS)}. Received: runs={runs!r}"
        )
    for name in runs:
        if name not in STUDY_RUNS:
            raise ValueError(
                f"Argument `runs` names an unknown run {name!r}; accepted: "
                f"{', '.join(STUDY_RUNS)}. Received: runs={runs!r}"
            )
    if "large" not in runs:
        raise ValueError(
            "Argument `runs` must include 'large', the baseline of the paired "
            f"differences. Received: runs={runs!r}"
        )
    if any(name in CHEAP_SAM_RUNS for name in runs) and "sam" not in runs:
        raise ValueError(
            "Argument `runs` names sam_interval or looksam, which take SAM's chosen "
            f"setting, without 'sam'. Received: runs={runs!r}"
        )
    return tuple(name for name in STUDY_RUNS if name in runs)


@dataclass(frozen=True)
class StudySettings:
    """What every run of `run_sharpness_study` shares.

    Attributes:
        small_batch: batch size of `small`.
        large_batch: batch size of every other run.
        slice_size: samples per m-sharpness slice of SAM and ASAM (≤ 32).
        budget: the `protocol.Budget` of every run.
        grid_size: learning rates per grid (log-spaced by √10).
        sam_rhos: the ρ grid of SAM (crossed with its learning rates).
        measure_samples: training samples the curvature measurements use.
        trace_samples: Rademacher vectors of the trace.
        keskar: whether to measure Keskar's ε-sharpness (L-BFGS-B per solution).
        epsilon: the box size of Keskar's sharpness.
        jit_compile: XLA for the train step and the optimizers.
    """

    small_batch: int = DEFAULT_SMALL_BATCH
    large_batch: int = DEFAULT_LARGE_BATCH
    slice_size: int = DEFAULT_SLICE_SIZE
    budget: Any = None
    grid_size: int = DEFAULT_GRID_SIZE
    sam_rhos: tuple[float, ...] = SAM_RHOS
    measure_samples: int = DEFAULT_MEASURE_SAMPLES
    trace_samples: int = DEFAULT_TRACE_SAMPLES
    keskar: bool = True
    epsilon: float = DEFAULT_EPSILON
    jit_compile: bool = True

    def batch_size(self, name: str) -> int:
        return self.small_batch if name == "small" else self.large_batch

    def measurement_subset(self, development) -> tuple:
        """`(x, y)`: the first `measure_samples` training samples, on which the
        curvature and the interpolation's training loss are measured."""
        return (
            development.x_train[: self.measure_samples],
            development.y_train[: self.measure_samples],
        )

    @property
    def num_batch_splits(self) -> int:
        """m-sharpness' number of slices: ⌈large batch / slice size⌉."""
        return math.ceil(self.large_batch / self.slice_size)

    def learning_rate_grid(self, name: str) -> tuple[float, ...]:
        """The run's learning-rate grid, in its own convention."""
        from keras_optnotes.experiments.protocol import log_grid

        if name == "lars":
            return log_grid(LARS_LEARNING_RATE, self.grid_size)
        centre = ADAM_BASE_LEARNING_RATE * math.sqrt(
            self.batch_size(name) / ADAM_BASE_BATCH
        )
        return log_grid(centre, self.grid_size)

    def fixed(self, name: str) -> dict:
        """Every hyper-parameter of run `name` but the tuned ones."""
        config = {"batch_size": self.batch_size(name)}
        if name in (
            "small",
            "large",
            "swa",
            "lookahead",
            "sam",
            "asam",
            *CHEAP_SAM_RUNS,
        ):
            config["optimizer"] = "Adam"
        if name in ("sam", "asam", *CHEAP_SAM_RUNS):
            config.update(
                num_batch_splits=self.num_batch_splits,
                slice_size=math.ceil(self.large_batch / self.num_batch_splits),
                adaptive=name == "asam",
            )
        if name == "asam":
            config.update(rho=ASAM_RHO, eta=ASAM_ETA)
        if name == "sam_interval":
            config.update(interval=SAM_INTERVAL)
        if name == "looksam":
            config.update(interval=SAM_INTERVAL, looksam_alpha=LOOKSAM_ALPHA)
        if name == "lars":
            config.update(
                optimizer="LARS",
                momentum=LARS_MOMENTUM,
                trust_coefficient=LARS_TRUST_COEFFICIENT,
                weight_decay=LARS_WEIGHT_DECAY,
                warmup_epochs=LARS_WARMUP_EPOCHS,
                schedule="linear warm-up, then cosine decay to 0",
            )
        if name == "swa":
            config.update(swa_start_fraction=SWA_START_FRACTION, swa_frequency=1)
        if name == "lookahead":
            config.update(
                sync_period=LOOKAHEAD_SYNC_PERIOD,
                slow_step_size=LOOKAHEAD_SLOW_STEP_SIZE,
            )
        return config

    def candidates(self, name: str) -> tuple[dict, ...]:
        """The grid of run `name` (cheaper SAM modes: none; they take SAM's choice)."""
        rates = self.learning_rate_grid(name)
        if name == "sam":
            return tuple(
                {"learning_rate": lr, "rho": rho}
                for rho in self.sam_rhos
                for lr in rates
            )
        return tuple({"learning_rate": lr} for lr in rates)


def _study_trainer(name: str, config: Mapping[str, Any], model, settings, steps):
    """The model to fit, its optimizer and callbacks for run `name` with `config`
    (fixed and tuned hyper-parameters merged), training for `steps` steps."""
    import keras

    from keras_optnotes import callbacks, optimizers
    from keras_optnotes.training import SharpnessAwareMinimization

    jit = settings.jit_compile
    if name == "lars":
        steps_per_epoch = steps / max(1, config.get("epochs", 1))
        warmup = max(1, min(int(LARS_WARMUP_EPOCHS * steps_per_epoch), steps // 2))
        schedule = keras.optimizers.schedules.CosineDecay(
            0.0,
            decay_steps=max(1, steps - warmup),
            warmup_target=config["learning_rate"],
            warmup_steps=warmup,
        )
        lars = optimizers.LARS(
            schedule,
            momentum=config["momentum"],
            weight_decay=config["weight_decay"],
            trust_coefficient=config["trust_coefficient"],
            jit_compile=jit,
        )
        return model, lars, []
    adam = optimizers.Adam(learning_rate=config["learning_rate"], jit_compile=jit)
    if name in ("sam", "asam", *CHEAP_SAM_RUNS):
        extra = {}
        if "interval" in config:
            extra["interval"] = config["interval"]
        if "looksam_alpha" in config:
            extra["looksam_alpha"] = config["looksam_alpha"]
        sam = SharpnessAwareMinimization(
            model,
            rho=config["rho"],
            adaptive=config["adaptive"],
            eta=config.get("eta", ASAM_ETA),
            num_batch_splits=config["num_batch_splits"],
            **extra,
        )
        return sam, adam, []
    if name == "swa":
        epochs = config.get("epochs", 1)
        swa = callbacks.StochasticWeightAveraging(
            start_epoch=min(epochs - 1, int(SWA_START_FRACTION * epochs))
        )
        return model, adam, [swa]
    if name == "lookahead":
        lookahead = optimizers.Lookahead(
            adam,
            sync_period=config["sync_period"],
            slow_step_size=config["slow_step_size"],
        )
        return model, lookahead, []
    return model, adam, []


def train_solution(
    name: str,
    config: Mapping[str, Any],
    seed: int,
    development,
    settings: StudySettings,
):
    """Step 1 of a study run: trains run `name` with `config` from
    `build_classifier(..., seed=seed)` for the budget; returns the trained model
    (compiled with the loss, for the measurements). Sees no test data."""
    import keras

    from keras_optnotes.experiments import protocol
    from keras_optnotes.models import build_classifier

    batch = settings.batch_size(name)
    samples = len(development.x_train)
    steps = settings.budget.steps(batch, samples)
    epochs = settings.budget.epochs(batch, samples)
    keras.utils.set_random_seed(seed)
    model = build_classifier(
        development.input_shape, development.num_classes, seed=seed
    )
    trainer, optimizer, extra = _study_trainer(
        name, {**config, "epochs": epochs}, model, settings, steps
    )
    jit = settings.jit_compile and keras.backend.backend() != "torch"
    trainer.compile(
        optimizer=optimizer, loss="sparse_categorical_crossentropy", jit_compile=jit
    )
    protocol.fit_for_budget(
        trainer,
        development,
        batch_size=batch,
        budget=settings.budget,
        seed=seed,
        callbacks=extra,
    )
    if trainer is not model:  # SAM's wrapper: the inner model is measured
        model.compile(loss="sparse_categorical_crossentropy", jit_compile=jit)
    return model


def measure_solution(model, split, seed: int, settings: StudySettings) -> dict:
    """Step 2: a trained solution's test and validation scores and its sharpness.

    Test loss and accuracy on the test split; training loss and accuracy, the
    Hessian's λ_max (power iteration, 20 iterations), its trace (Hutchinson) and,
    with `settings.keskar`, Keskar's ε-sharpness, all on the first
    `measure_samples` training samples with `training=False`.
    """
    from keras_optnotes import diagnostics
    from keras_optnotes.experiments.protocol import classification_scores

    development = split.development
    subset = settings.measurement_subset(development)
    train = classification_scores(model, *subset)
    validation = classification_scores(model, development.x_val, development.y_val)
    test = classification_scores(model, split.x_test, split.y_test)
    jit = None if settings.jit_compile else False
    measured = {
        "test_accuracy": test["accuracy"],
        "test_loss": test["loss"],
        "validation_accuracy": validation["accuracy"],
        "train_loss": train["loss"],
        "train_accuracy": train["accuracy"],
        "loss_gap": test["loss"] - train["loss"],
    }
    if not math.isfinite(train["loss"]):  # a diverged run has no curvature to measure
        nan = float("nan")
        return {**measured, "lambda_max": nan, "hessian_trace": nan,
                "keskar_sharpness": nan}  # fmt: skip
    eigen = diagnostics.hessian_top_eigenvalues(
        model, subset, max_iterations=20, seed=seed, jit_compile=jit, verbose=0
    )
    trace = diagnostics.hessian_trace(
        model, subset, samples=settings.trace_samples, seed=seed, jit_compile=jit,
        verbose=0,
    )  # fmt: skip
    measured["lambda_max"] = float(eigen.top)
    measured["hessian_trace"] = float(trace.trace)
    if settings.keskar:
        keskar = diagnostics.keskar_sharpness(
            model, subset, epsilon=settings.epsilon, seed=seed, verbose=0
        )
        measured["keskar_sharpness"] = float(keskar.sharpness)
    return measured


@dataclass(frozen=True)
class SharpnessStudy:
    """The result of `run_sharpness_study`.

    Attributes:
        settings: the shared `StudySettings`.
        protocol: the `protocol.ProtocolResult`: per run its grid search on
            validation, its chosen config and its per-seed measurements on the
            report seeds (`STUDY_METRICS`).
        alphas: positions α of the line (1 − α) θ_small + α θ_large between the
            first report seed's small- and large-batch solutions; empty unless both
            ran.
        train_line: loss on the measurement subset at each α.
        test_line: loss on the test split at each α.
        seconds: wall-clock time of the whole study.
    """

    settings: StudySettings
    protocol: Any
    alphas: tuple[float, ...] = ()
    train_line: tuple[float, ...] = ()
    test_line: tuple[float, ...] = ()
    seconds: float = float("nan")

    @property
    def runs(self) -> tuple[str, ...]:
        return tuple(arm.name for arm in self.protocol.arms)

    def baseline_of(self, name: str) -> str:
        """The run `name` is compared with: SAM for its cheaper modes, else large."""
        return "sam" if name in CHEAP_SAM_RUNS else "large"

    def interval(self, name: str, metric: str):
        """Mean and 95 % t-interval of `metric` over the finite per-seed values."""
        return finite_interval(self.protocol.get(name).per_seed.get(metric, ()))

    def difference(self, name: str, metric: str, baseline: str = "large"):
        """`name` minus `baseline` in `metric`, paired by seed (finite pairs)."""
        return finite_interval(
            self.protocol.get(name).per_seed[metric],
            self.protocol.get(baseline).per_seed[metric],
        )

    def to_dict(self) -> dict:
        """The `sharpness.json` content: `{"protocol": {...}, "runs": {name:
        {"config", "learning_rate_grid", "per_seed", "test_accuracy": {"mean",
        "ci95"}, "difference_vs_large": {...}, ...}}}`."""
        names = self.runs
        batch_sizes = {name: self.settings.batch_size(name) for name in names}
        data = self.protocol.to_dict(metrics=(), batch_sizes=batch_sizes)
        data["protocol"].update(
            small_batch=self.settings.small_batch,
            large_batch=self.settings.large_batch,
            slice_size=self.settings.slice_size,
            measure_samples=self.settings.measure_samples,
            trace_samples=self.settings.trace_samples,
            keskar_sharpness=self.settings.keskar,
            wall_clock_seconds=self.seconds,
            cheaper_sam_modes="sam_interval and looksam take SAM's chosen rho, tune "
            "their learning rate on three rates around SAM's chosen one, and are "
            "compared with SAM, paired",
        )
        for name in names:
            entry = data["runs"][name]
            per_seed = self.protocol.get(name).per_seed
            for metric in STUDY_METRICS:
                if metric in per_seed:
                    interval = self.interval(name, metric)
                    entry[metric] = None if interval is None else interval.to_dict()
            for baseline in ("large", self.baseline_of(name)):
                key = f"difference_vs_{baseline}"
                entry[key] = {}
                for metric in STUDY_METRICS:
                    if metric in per_seed:
                        interval = self.difference(name, metric, baseline)
                        entry[key][metric] = (
                            None if interval is None else interval.to_dict()
                        )
            entry["grid_edge"] = self.protocol.get(name).search.on_edge("learning_rate")
        if self.alphas:
            data["interpolation"] = {
                "seed": self.protocol.seeds.report[0],
                "alpha": list(self.alphas),
                "train_loss": list(self.train_line),
                "test_loss": list(self.test_line),
            }
        return data

    def table_rows(self) -> list[list]:
        """One row of `STUDY_COLUMNS` per run."""

        def shown(interval, scale=1.0, digits=2):
            return "n/a" if interval is None else interval.format(scale, digits)

        rows = []
        for name in self.runs:
            arm = self.protocol.get(name)
            base = self.baseline_of(name)
            setting = describe_setting(
                {
                    k: v
                    for k, v in arm.config.items()
                    if k not in ("batch_size", "learning_rate", "optimizer")
                }
            )
            rows.append(
                [
                    name,
                    arm.config["batch_size"],
                    f"{arm.config['learning_rate']:.3g}",
                    f"{arm.config.get('optimizer', '')}; {setting}".strip("; "),
                    shown(self.interval(name, "test_accuracy"), 100),
                    shown(self.difference(name, "test_accuracy", base), 100)
                    + ("" if base == "large" else " (vs sam)"),
                    shown(self.interval(name, "test_loss"), 1, 3),
                    shown(self.difference(name, "test_loss", base), 1, 3)
                    + ("" if base == "large" else " (vs sam)"),
                    shown(self.interval(name, "lambda_max"), 1, 1),
                    shown(self.interval(name, "hessian_trace"), 1, 0),
                    shown(self.interval(name, "keskar_sharpness"), 1, 2),
                    "yes" if arm.search.on_edge("learning_rate") else "no",
                ]
            )
        return rows

    def per_seed_rows(self) -> list[list]:
        """One row of `PER_SEED_COLUMNS` per run and report seed."""
        rows = []
        for name in self.runs:
            arm = self.protocol.get(name)
            for index, seed in enumerate(arm.seeds):
                rows.append(
                    [name, seed]
                    + [
                        arm.per_seed[m][index] if m in arm.per_seed else ""
                        for m in STUDY_METRICS
                    ]
                )
        return rows


def _printer(verbose: int | str, progress: Progress | None) -> Progress | None:
    """What receives the progress lines: `progress`, else `print` when `verbose`."""
    import time

    if progress is not None:
        return progress
    if verbose in (0, "0", False, None):
        return None
    start = time.monotonic()
    return lambda line: print(f"[{time.monotonic() - start:7.1f} s] {line}", flush=True)


def run_sharpness_study(
    split: Any,
    *,
    runs: Sequence[str] | None = None,
    seeds: int = DEFAULT_SEEDS,
    tuning_seeds: int = DEFAULT_TUNING_SEEDS,
    budget: Any = DEFAULT_BUDGET,
    small_batch: int = DEFAULT_SMALL_BATCH,
    large_batch: int = DEFAULT_LARGE_BATCH,
    slice_size: int = DEFAULT_SLICE_SIZE,
    grid_size: int = DEFAULT_GRID_SIZE,
    edge_extensions: int = EDGE_EXTENSIONS,
    sam_rhos: Sequence[float] = SAM_RHOS,
    measure_samples: int = DEFAULT_MEASURE_SAMPLES,
    trace_samples: int = DEFAULT_TRACE_SAMPLES,
    keskar: bool = True,
    epsilon: float = DEFAULT_EPSILON,
    validation_fraction: float = 0.2,
    jit_compile: bool = True,
    verbose: int | str = 0,
    progress: Progress | None = None,
    on_run: Callable[[Any], None] | None = None,
) -> SharpnessStudy:
    """Small against large batch, and the remedies, each tuned, over seeds.

    The protocol is `keras_optnotes.experiments.protocol`'s: the loader's validation
    set is the held-out test split; a validation split is cut from its training
    set. Each run's learning rate (SAM's ρ too) is chosen on a log-spaced grid by
    its mean validation accuracy over `tuning_seeds` seeds, then the chosen setting
    trains on `seeds` fresh seeds (0 … seeds − 1) and each solution is measured
    (`measure_solution`): test loss and accuracy, λ_max and trace of the Hessian,
    Keskar's sharpness. Every run trains for the same `budget`.

    The runs (`STUDY_RUNS`): `small` (Adam, `small_batch`); `large` (Adam,
    `large_batch`); with the large batch: `sam` (Foret et al. 2021) with
    m-sharpness, each slice of `slice_size` samples perturbed by its own gradient,
    ρ tuned over `sam_rhos`; `asam` (Kwon et al. 2021, ρ = 0.5, η_T = 0.01, same
    slices); `lars` (You et al. 2017: its own global rate on a grid around 3,
    trust coefficient 0.001, momentum 0.9, weight decay 5e-4, linear warm-up over 5
    epochs then cosine decay); `swa` (Izmailov et al. 2018, the weights averaged at
    the end of each epoch from 75 % of the run); `lookahead` (Zhang et al. 2019,
    k = 5, α = 0.5); and, when `SharpnessAwareMinimization` has `interval`,
    `sam_interval` (SAM's step every 5th step) and `looksam` (Liu et al. 2022,
    α = 0.7), which take SAM's chosen ρ, tune their learning rate on three rates √10
    apart around SAM's chosen one, and are compared with SAM.
    Adam's grids are centred on 1e-3 at batch 16, moved by the square-root rule.

    Args:
        split: a loader's `Split` (its validation set becomes the test split) or a
            `protocol.ThreeWaySplit`.
        runs: which of `STUDY_RUNS` to train (default: all that this package's SAM
            supports); `large` is required (the baseline).
        seeds: report seeds, ≥ 2 (≥ 8 for a full run).
        tuning_seeds: seeds of the grid search, ≥ 1.
        budget: a `protocol.Budget` or `(kind, amount)`: `("epochs", 60)` gives
            every run 60 epochs (fewer steps for the large batch), `("steps", n)`
            n optimizer steps each.
        small_batch: batch size of `small`, ≥ 1.
        large_batch: batch size of every other run, > `small_batch`.
        slice_size: samples per m-sharpness slice, in [1, 32].
        grid_size: learning rates per grid, ≥ 3.
        edge_extensions: how many times at most a run's grid is extended by one
            learning rate past the edge its winner is on (0: never).
        sam_rhos: SAM's ρ grid, each > 0.
        measure_samples: training samples the curvature measurements use, ≥ 1.
        trace_samples: Rademacher vectors of the trace, ≥ 2.
        keskar: measure Keskar's ε-sharpness (an L-BFGS-B maximization per
            solution).
        epsilon: the box size of Keskar's sharpness, > 0.
        validation_fraction: share of the loader's training set held out for
            validation.
        jit_compile: XLA for the train step and the optimizers.
        verbose: 0 quiet; 1 one line per training run.
        progress: called with each of those lines instead of `print`.
        on_run: called with each run's `protocol.ArmResult` as soon as it is
            complete.

    Returns:
        A `SharpnessStudy`.

    Raises:
        ValueError: an argument out of range, before any training.

    Example:

    >>> from keras_optnotes import data  # doctest: +SKIP
    >>> study = run_sharpness_study(data.load("digits"), seeds=8)  # doctest: +SKIP
    >>> study.difference("sam", "test_accuracy").format(100)  # doctest: +SKIP
    """
    import time

    from keras_optnotes.experiments import protocol

    start = time.monotonic()
    available = STUDY_RUNS if sam_supports_interval() else RUNS
    runs = check_study_runs(available if runs is None else runs)
    missing = [name for name in runs if name not in available]
    if missing:
        raise ValueError(
            f"Argument `runs` names {missing}, which need "
            "SharpnessAwareMinimization(interval=, looksam_alpha=); this version has "
            f"neither. Received: runs={runs!r}"
        )
    seeds = check_integer("seeds", seeds, 2)
    tuning_seeds = check_integer("tuning_seeds", tuning_seeds, 1)
    if not isinstance(budget, protocol.Budget):
        if not (isinstance(budget, Sequence) and len(budget) == 2):
            raise ValueError(
                "Argument `budget` must be a protocol.Budget or a (kind, amount) "
                f"pair such as ('epochs', 60). Received: budget={budget!r}"
            )
        budget = protocol.Budget(*budget)
    small_batch, large_batch = _check_batch_sizes(small_batch, large_batch)
    slice_size = check_integer("slice_size", slice_size, 1)
    if slice_size > 32:
        raise ValueError(
            "Argument `slice_size` must be at most 32 (m-sharpness' slices). "
            f"Received: slice_size={slice_size!r}"
        )
    grid_size = check_integer("grid_size", grid_size, 3)
    edge_extensions = check_integer("edge_extensions", edge_extensions, 0)
    if isinstance(sam_rhos, str) or not isinstance(sam_rhos, Sequence) or not sam_rhos:
        raise ValueError(
            "Argument `sam_rhos` must be a non-empty sequence of numbers > 0. "
            f"Received: sam_rhos={sam_rhos!r}"
        )
    sam_rhos = tuple(check_positive("sam_rhos", rho) for rho in sam_rhos)
    settings = StudySettings(
        small_batch=small_batch,
        large_batch=large_batch,
        slice_size=slice_size,
        budget=budget,
        grid_size=grid_size,
        sam_rhos=sam_rhos,
        measure_samples=check_integer("measure_samples", measure_samples, 1),
        trace_samples=check_integer("trace_samples", trace_samples, 2),
        keskar=check_bool("keskar", keskar),
        epsilon=check_positive("epsilon", epsilon),
        jit_compile=check_bool("jit_compile", jit_compile),
    )
    if not isinstance(split, protocol.ThreeWaySplit):
        split = protocol.three_way_split(split, validation_fraction=validation_fraction)

    from keras_optnotes.diagnostics._backend import check_backend
    from keras_optnotes.diagnostics.sharpness import _import_scipy_optimize

    check_backend("keras-optnotes sharpness's measurements")
    if settings.keskar:
        _import_scipy_optimize()
    chosen_seeds = protocol.make_seeds(seeds, tuning_seeds)
    kept: dict[str, Any] = {}
    arms = [_study_arm(name, settings, chosen_seeds, kept) for name in runs]
    result = protocol.run_protocol(
        split,
        arms,
        seeds=chosen_seeds,
        budget=budget,
        measure=lambda model, data, seed: measure_solution(model, data, seed, settings),
        baseline="large",
        progress=_printer(verbose, progress),
        on_arm=on_run,
        max_extensions=edge_extensions,
    )
    alphas, train_line, test_line = _interpolate(kept, split, settings)
    return SharpnessStudy(
        settings=settings,
        protocol=result,
        alphas=alphas,
        train_line=train_line,
        test_line=test_line,
        seconds=time.monotonic() - start,
    )


def _study_arm(name, settings, seeds, kept):
    """The `protocol.Arm` of run `name`; the first report seed's small and large
    models are kept in `kept` for the interpolation."""
    from keras_optnotes.experiments import protocol

    fixed = settings.fixed(name)

    def train(setting, seed, development):
        model = train_solution(name, {**fixed, **setting}, seed, development, settings)
        if name in ("small", "large") and seed == seeds.report[0]:
            kept[name] = model
        return model

    if name in CHEAP_SAM_RUNS:

        def candidates(done):
            # SAM's chosen ρ; the learning rate tuned again, on three rates √10
            # apart around SAM's chosen one (a step that reuses an old direction
            # may want another rate), extended past an edge like every grid.
            chosen = done["sam"].search.best
            return tuple(
                {"learning_rate": rate, "rho": chosen["rho"]}
                for rate in protocol.log_grid(chosen["learning_rate"], 3)
            )

    else:
        candidates = settings.candidates(name)
    return protocol.Arm(name, fixed, candidates, train)


def _interpolate(kept, split, settings):
    """Keskar's line between the kept small and large solutions, or empty tuples."""
    if not ("small" in kept and "large" in kept):
        return (), (), ()
    subset = settings.measurement_subset(split.development)
    train_line, test_line = (
        _loss_line(kept["small"], kept["large"], data)
        for data in (subset, (split.x_test, split.y_test))
    )
    return ALPHAS, train_line, test_line

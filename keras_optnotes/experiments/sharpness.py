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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar

from keras_optnotes.checks import check_bool, check_integer, check_positive
from keras_optnotes.experiments._common import Progress, RunsResult

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
    small_batch = check_integer("small_batch", small_batch, 1)
    large_batch = check_integer("large_batch", large_batch, 1)
    if large_batch <= small_batch:
        raise ValueError(
            "Argument `large_batch` must be larger than `small_batch` "
            f"({small_batch}). Received: large_batch={large_batch!r}"
        )
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

    import keras

    from keras_optnotes import diagnostics
    from keras_optnotes.diagnostics._backend import check_backend
    from keras_optnotes.diagnostics.sharpness import _import_scipy_optimize
    from keras_optnotes.models import build_classifier

    # What the measurements need, checked before any training.
    check_backend("keras-optnotes sharpness's measurements")
    _import_scipy_optimize()
    keras.utils.set_random_seed(seed)
    base = build_classifier(split.input_shape, split.num_classes, seed=seed)
    initial_weights = base.get_weights()
    budget = large_epochs or 10 * epochs
    target, models, used = None, {}, {}
    for index, name in enumerate(runs, start=1):
        if progress is not None:
            progress(f"[{index}/{len(runs)}] {name}: {SETTINGS[name]}")
        model = keras.models.clone_model(base)
        model.set_weights(initial_weights)
        if name == "small":
            run_epochs, callbacks = epochs, []
        elif name == "large":
            run_epochs = budget
            callbacks = [] if target is None else [_stop_at_loss(target)]
        else:
            run_epochs = used.get("large", budget)
            callbacks = []
        trainer, optimizer, extra = _remedy(
            name,
            model,
            run_epochs,
            len(split.x_train),
            small_batch,
            large_batch,
            learning_rate,
            jit_compile,
        )
        # `jit_compile` is XLA: on PyTorch (no XLA) the train step runs eagerly, not
        # through torch.compile.
        compiled = {
            "loss": "sparse_categorical_crossentropy",
            "metrics": ["accuracy"],
            "jit_compile": jit_compile and keras.backend.backend() != "torch",
        }
        trainer.compile(optimizer=optimizer, **compiled)
        keras.utils.set_random_seed(seed)
        history = trainer.fit(
            split.x_train,
            split.y_train,
            batch_size=small_batch if name == "small" else large_batch,
            epochs=run_epochs,
            verbose=verbose,
            callbacks=callbacks + extra,
        )
        if trainer is not model:  # SAM's wrapper: the inner model is measured
            model.compile(**compiled)
        if name == "small":
            target = history.history["loss"][-1]
        used[name] = len(history.history["loss"])
        models[name] = model

    subset = (split.x_train[:measure_samples], split.y_train[:measure_samples])
    jit = None if jit_compile else False
    measured = []
    for name, model in models.items():
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
            seed=seed,
            verbose=0,
        )
        measured.append(
            SolutionRun(
                name=name,
                setting=SETTINGS[name],
                batch_size=small_batch if name == "small" else large_batch,
                epochs=used[name],
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
        )
    alphas, train_line, val_line = (), (), ()
    if "small" in models and "large" in models:
        small, large = models["small"], models["large"]
        alphas = ALPHAS
        train_line = tuple(
            float(v)
            for v in diagnostics.loss_along_line(
                small, subset, other_weights=large, alphas=ALPHAS
            ).losses
        )
        val_line = tuple(
            float(v)
            for v in diagnostics.loss_along_line(
                small, (split.x_val, split.y_val), other_weights=large, alphas=ALPHAS
            ).losses
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

"""`keras-optnotes regularize`: what each of the notes' regularizers does to the gap.

The same network is trained from the same initial weights, on the same small training
subset with the same labels, once with no regularization and once with each technique
alone. Every trained model is then scored the same way, in inference mode on clean
inputs: the plain cross-entropy (no penalty, no smoothing) and the accuracy, on the
training subset (against the labels it was trained on) and on the validation set. The
command prints the table and writes `regularize.md`, `regularize.csv` and
`regularize.png` (both gaps per technique).

The design, and why:

- Something to overfit. 20 % of the training subset's labels are replaced by a wrong
  class (`--label-noise 0.2`, symmetric noise as in Zhang et al. 2017 and Arpit et
  al. 2017; the validation labels stay clean). An unregularized network fits every
  training label, the wrong ones too: that memorization is the overfitting, and how
  far each technique resists it is what its gap shows. On clean digits the 128
  samples leave little to memorize: every run fits them, the gap is the validation
  digits that are hard, and the techniques moved it by about as much as a change of
  seed did (README; `--label-noise 0` runs that design).
- Two gaps. The loss gap (validation - training cross-entropy) is the one the chart
  shows first and the tests assert on; the error gap (training accuracy - validation accuracy) is the textbook
  generalization gap of a classifier. With noisy training labels the error gap can
  be negative: a network that learned the digits rather than the wrong labels is
  more accurate on the clean validation labels than on its noisy training labels.
- Measured at the end of training, the same number of epochs for every technique
  (only early stopping stops sooner): scoring each run at its best validation epoch
  would early-stop every row, with the validation set used both to choose and to
  score.
- A network able to overfit: Flatten -> 2 x Dense(512)/ReLU -> softmax (about 300k
  weights for 128 training digits), trained 150 epochs, with Adam at its paper's
  default step, eta = 1e-3, batch 32, annealed to 0 by cosine decay (Loshchilov &
  Hutter 2017) so that every run is scored at a settled final iterate: with a
  constant step the gradient noise of the stochastic techniques (dropout, noise,
  augmentation, mixing) leaves the last iterate, and its score, noisy.
- Every technique at a textbook strength, the same for every dataset, none tuned on
  this run: dropout 0.5 on the hidden units (Srivastava et al. 2014); input noise
  sigma = 0.5 x the training inputs' standard deviation (Bishop 1995's small-noise
  regime); weight noise sigma = 0.05, about the Glorot-initial weights' own standard
  deviation (0.04-0.06 here; Graves et al. 2013 use 0.075); the L2
  penalty alpha = 1e-3 on the kernels; decoupled weight decay lambda = 1, i.e.
  eta * lambda = 1e-3 per step at the top of the schedule (Keras scales the decay
  by the scheduled step, as the AdamW paper does), Loshchilov & Hutter's
  normalized decay 0.025 at
  batch 32, 128 samples and 150 epochs (0.025 * sqrt(32 / (128 * 150)) = 1e-3);
  Prechelt's GL_2 (his range is 1-5); label smoothing 0.1 (Szegedy et al. 2016);
  MixUp alpha = 0.2 (Zhang et al. 2018); CutMix alpha = 1 (Yun et al. 2019);
  rotations up to 18 degrees and zoom 10 %; batch normalization after each hidden
  Dense layer (Ioffe & Szegedy 2015).
- Half the digits (898) are the validation set, so that one validation sample is
  about 0.1 point of accuracy; single runs still differ between seeds, so only the
  orderings that held on every seed measured are asserted in the tests.

Python use, without the command line:

>>> from keras_optnotes import data  # doctest: +SKIP
>>> from keras_optnotes.commands.regularize import run_ablation
>>> results = run_ablation(data.load("digits"), ["none", "dropout"], epochs=20)
>>> results[0].accuracy_gap, results[0].loss_gap
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from keras_optnotes.checks import check_in_range
from keras_optnotes.cli import UsageError
from keras_optnotes.commands._common import (
    add_dataset_argument,
    add_output_arguments,
    add_seed_argument,
    fraction,
    op_determinism,
    positive_int,
)
from keras_optnotes.data import DatasetUnavailableError, Split, corrupt_labels
from keras_optnotes.report import (
    markdown_table,
    new_figure,
    output_folder,
    print_report,
    write_report,
)

NAME = "regularize"
HELP = (
    "Train the same network with no regularization and with each of the notes' "
    "regularizers alone, and compare their generalization gaps."
)


@dataclass(frozen=True)
class Technique:
    """One row of the ablation: what is changed, and the setting used."""

    name: str
    setting: str
    images_only: bool = False


# Each setting is the method's paper's or a textbook choice (see the module docstring);
# none was tuned on the ablation's own results.
TECHNIQUES: tuple[Technique, ...] = (
    Technique("none", "-"),
    Technique("early_stopping", "Prechelt GL, alpha=2"),
    Technique("l2_penalty", "alpha/2 ||W||^2, alpha=1e-3"),
    Technique("weight_decay", "decoupled (AdamW), lambda=1"),
    Technique("augmentation", "rotate 0.05, zoom 0.1", images_only=True),
    Technique("input_noise", "GaussianNoise, 0.5 x input std"),
    Technique("weight_noise", "WeightNoise(stddev=0.05)"),
    Technique("label_smoothing", "0.1"),
    Technique("mixup", "alpha=0.2", images_only=True),
    Technique("cutmix", "alpha=1.0", images_only=True),
    Technique("dropout", "Dropout(0.5)"),
    Technique("batch_norm", "BatchNormalization"),
)
TECHNIQUE_NAMES = tuple(t.name for t in TECHNIQUES)
_BY_NAME = {t.name: t for t in TECHNIQUES}

L2_ALPHA = 1e-3
WEIGHT_DECAY = 1.0
# Input noise sigma, relative to the training inputs' standard deviation.
INPUT_NOISE = 0.5
WEIGHT_NOISE = 0.05
LABEL_SMOOTHING = 0.1
DROPOUT = 0.5
GL_ALPHA = 2.0
AUGMENTATION = {"rotate": 0.05, "zoom": 0.1}
MIXUP_ALPHA = 0.2
CUTMIX_ALPHA = 1.0

WIDTH = 512
LEARNING_RATE = 1e-3
DEFAULT_EPOCHS = 150
DEFAULT_TRAIN_SIZE = 128
# Share of the training subset's labels replaced by a wrong class: the noise that an
# unregularized network memorizes and a regularizer should resist.
DEFAULT_LABEL_NOISE = 0.2
# Half the data scores the runs: a large validation set keeps the gaps' noise low.
VALIDATION_FRACTION = 0.5
DEFAULT_BATCH_SIZE = 32
DEFAULT_OUT = "optnotes-report"
QUICK_EPOCHS = 2
QUICK_TRAIN_SIZE = 64
# --quick without --techniques: one technique of each code path (a callback, a
# penalty, a layer, a data pipeline), since every run pays its own compilation.
QUICK_TECHNIQUES = ("none", "early_stopping", "l2_penalty", "dropout", "mixup")

TABLE_COLUMNS = (
    "technique",
    "setting",
    "train loss",
    "val loss",
    "loss gap (val - train)",
    "train accuracy",
    "val accuracy",
    "error gap (train - val acc)",
    "epochs run",
)


@dataclass(frozen=True)
class AblationResult:
    """One technique's training run, scored on clean data in inference mode.

    Attributes:
        technique: the technique's name, one of `TECHNIQUE_NAMES`.
        setting: its hyper-parameter, in words.
        train_loss: cross-entropy on the (clean) training subset.
        val_loss: cross-entropy on the validation set.
        loss_gap: `val_loss - train_loss`.
        train_accuracy: accuracy on the (clean) training subset.
        val_accuracy: accuracy on the validation set.
        accuracy_gap: `train_accuracy - val_accuracy`, the error gap (validation
            error - training error).
        epochs_run: epochs trained (fewer than asked when early stopping stopped).
        history: Keras' `History.history` of the run (`loss`, and for early
            stopping `val_loss` and `prechelt_gl`).
    """

    technique: str
    setting: str
    train_loss: float
    val_loss: float
    loss_gap: float
    train_accuracy: float
    val_accuracy: float
    accuracy_gap: float
    epochs_run: int
    history: dict

    def table_row(self) -> list:
        """The row of `TABLE_COLUMNS` for this result."""
        return [
            self.technique,
            self.setting,
            self.train_loss,
            self.val_loss,
            self.loss_gap,
            self.train_accuracy,
            self.val_accuracy,
            self.accuracy_gap,
            self.epochs_run,
        ]


def parse_techniques(text: str | None, images: bool = True) -> tuple[str, ...]:
    """The techniques named by `--techniques` ("all" or a comma-separated list).

    With `images=False` (samples that are not (H, W, C) images) "all" leaves out the
    image-only techniques (augmentation, MixUp, CutMix) and naming one is an error.
    """
    if text is None or text.strip().lower() == "all":
        return tuple(t.name for t in TECHNIQUES if images or not t.images_only)
    names = [part.strip().lower() for part in text.split(",") if part.strip()]
    if not names:
        raise UsageError(
            f"--techniques: received {text!r}; accepted: all, or a comma-separated "
            f"list of {', '.join(TECHNIQUE_NAMES)}"
        )
    for name in names:
        if name not in _BY_NAME:
            raise UsageError(
                f"--techniques: unknown technique {name!r}; accepted: all, or a "
                f"comma-separated list of {', '.join(TECHNIQUE_NAMES)}"
            )
        if _BY_NAME[name].images_only and not images:
            raise UsageError(
                f"--techniques: {name} needs image samples (H, W, C); this dataset's "
                "samples are not images"
            )
    return tuple(dict.fromkeys(names))


def build_network(
    input_shape: Sequence[int],
    num_classes: int,
    technique: str,
    *,
    seed: int = 0,
    input_noise: float = 0.1,
):
    """The ablation's MLP, with the technique's layers where it has any.

    Flatten → [GaussianNoise(input_noise)] → (Dense(512) → [BatchNorm] → ReLU →
    [Dropout]) × 2 → Dense(num_classes, softmax); with "weight_noise" both hidden
    Dense layers are wrapped in `WeightNoise`. Every kernel is Glorot-uniform with a
    seed derived from `seed` and the layer's position, so all variants start from the
    same weights in the layers they share. `input_noise` is the absolute sigma of
    the "input_noise" variant (the ablation passes 0.5 x the inputs' std).
    """
    import keras

    from keras_optnotes.layers import WeightNoise, normalization

    inputs = keras.Input(shape=tuple(input_shape))
    x = keras.layers.Flatten()(inputs)
    if technique == "input_noise":
        x = keras.layers.GaussianNoise(input_noise, seed=seed)(x)
    for position in (1, 2):
        dense = keras.layers.Dense(
            WIDTH,
            kernel_initializer=keras.initializers.GlorotUniform(seed * 1000 + position),
        )
        if technique == "weight_noise":
            dense = WeightNoise(dense, WEIGHT_NOISE, seed=seed * 1000 + position)
        x = dense(x)
        if technique == "batch_norm":
            x = normalization("batch")(x)
        x = keras.layers.Activation("relu")(x)
        if technique == "dropout":
            x = keras.layers.Dropout(DROPOUT, seed=seed * 1000 + position)(x)
    outputs = keras.layers.Dense(
        num_classes,
        activation="softmax",
        kernel_initializer=keras.initializers.GlorotUniform(seed * 1000 + 3),
    )(x)
    return keras.Model(inputs, outputs, name=f"ablation_{technique}")


def _training_data(x, y, technique: str, num_classes: int, batch_size: int, seed: int):
    import tensorflow as tf

    from keras_optnotes.data import augment

    one_hot = np.eye(num_classes, dtype="float32")[y]
    dataset = tf.data.Dataset.from_tensor_slices((x, one_hot)).shuffle(
        len(x), seed=seed, reshuffle_each_iteration=True
    )
    recipes: dict[str, dict] = {
        "augmentation": AUGMENTATION,
        "mixup": {"mixup_alpha": MIXUP_ALPHA},
        "cutmix": {"cutmix_alpha": CUTMIX_ALPHA},
    }
    if technique in recipes:
        # One call of the Keras layers per epoch on the whole (small) shuffled
        # training set, then cut into batches: the layers' fixed cost per call
        # dominates on 8x8 images. MixUp and CutMix then pair each sample with a
        # partner drawn from the whole set instead of from its batch.
        dataset = augment(
            dataset.batch(len(x)), seed=seed, **recipes[technique]
        ).unbatch()
    # Repeated, with `steps_per_epoch` in `fit`: one iterator for the whole run, so
    # the pipeline's functions are set up once rather than at every epoch.
    return dataset.batch(batch_size).repeat().prefetch(2)


def _score(model, split: Split) -> tuple[float, float, float, float]:
    """Train and validation cross-entropy, train and validation accuracy, in float64.

    Inference mode on clean data, the plain cross-entropy whatever the training loss
    was; one `predict` call (one trace) for both sets.
    """
    import logging

    x = np.concatenate([split.x_train, split.x_val])
    y = np.concatenate([split.y_train, split.y_val])
    # Every run's model traces its own predict function; after five of them
    # TensorFlow warns of "retracing", which is expected here and not the user's
    # concern.
    logger = logging.getLogger("tensorflow")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        probabilities = model.predict(x, batch_size=len(x), verbose=0)
    finally:
        logger.setLevel(level)
    probabilities = probabilities.astype("float64")
    losses = -np.log(np.clip(probabilities[np.arange(len(y)), y], 1e-12, None))
    correct = probabilities.argmax(axis=1) == y
    n = len(split.x_train)
    return (
        float(losses[:n].mean()),
        float(losses[n:].mean()),
        float(correct[:n].mean()),
        float(correct[n:].mean()),
    )


def _train_one(
    split: Split,
    technique: str,
    epochs: int,
    batch_size: int,
    seed: int,
) -> AblationResult:
    import keras
    import tensorflow as tf

    from keras_optnotes import optimizers
    from keras_optnotes.callbacks import PrecheltEarlyStopping
    from keras_optnotes.regularizers import ParameterNormPenalty, apply_penalty

    keras.utils.set_random_seed(seed)
    input_noise = INPUT_NOISE * float(np.std(split.x_train))
    model = build_network(
        split.input_shape,
        split.num_classes,
        technique,
        seed=seed,
        input_noise=input_noise,
    )
    if technique == "l2_penalty":
        apply_penalty(model, ParameterNormPenalty(L2_ALPHA))
    steps_per_epoch = math.ceil(len(split.x_train) / batch_size)
    # Cosine decay to 0 over the whole run: every run is scored at a settled final
    # iterate, not wherever the noise of the stochastic techniques left it.
    schedule = keras.optimizers.schedules.CosineDecay(
        LEARNING_RATE, decay_steps=epochs * steps_per_epoch
    )
    model.compile(
        optimizer=optimizers.get(
            "adam",
            learning_rate=schedule,
            weight_decay=WEIGHT_DECAY if technique == "weight_decay" else None,
        ),
        loss=keras.losses.CategoricalCrossentropy(
            label_smoothing=LABEL_SMOOTHING if technique == "label_smoothing" else 0.0
        ),
    )
    # Only early stopping looks at the validation set during training; the other
    # runs are scored after training, which spares them a per-epoch evaluation.
    callbacks: list[Callable] = []
    validation = None
    if technique == "early_stopping":
        callbacks.append(PrecheltEarlyStopping("GL", alpha=GL_ALPHA))
        # A cached dataset: numpy validation data would be re-wrapped every epoch.
        validation = (
            tf.data.Dataset.from_tensor_slices(
                (split.x_val, np.eye(split.num_classes, dtype="float32")[split.y_val])
            )
            .batch(1024)
            .cache()
        )
    history = model.fit(
        _training_data(
            split.x_train,
            split.y_train,
            technique,
            split.num_classes,
            batch_size,
            seed,
        ),
        epochs=epochs,
        steps_per_epoch=steps_per_epoch,
        validation_data=validation,
        callbacks=callbacks,
        shuffle=False,  # the dataset shuffles, seeded
        verbose=0,
    )
    train_loss, val_loss, train_accuracy, val_accuracy = _score(model, split)
    setting = _BY_NAME[technique].setting
    if technique == "input_noise":
        setting = f"{setting} = {input_noise:.3g}"
    return AblationResult(
        technique=technique,
        setting=setting,
        train_loss=train_loss,
        val_loss=val_loss,
        loss_gap=val_loss - train_loss,
        train_accuracy=train_accuracy,
        val_accuracy=val_accuracy,
        accuracy_gap=train_accuracy - val_accuracy,
        epochs_run=len(history.history["loss"]),
        history={k: [float(v) for v in vs] for k, vs in history.history.items()},
    )


def run_ablation(
    split: Split,
    techniques: Sequence[str] = TECHNIQUE_NAMES,
    *,
    epochs: int = DEFAULT_EPOCHS,
    train_size: int | None = DEFAULT_TRAIN_SIZE,
    batch_size: int = DEFAULT_BATCH_SIZE,
    label_noise: float = DEFAULT_LABEL_NOISE,
    seed: int = 0,
    verbose: bool = False,
) -> list[AblationResult]:
    """Trains the ablation network once per technique and scores each run.

    Every run starts from the same initial weights (in the layers the variants
    share), sees the same `train_size` training samples in the same shuffled order
    and is trained with Adam (η = 1e-3, cosine decay to 0 over `epochs` epochs) on
    the cross-entropy for `epochs` epochs
    (early stopping may stop sooner and restores its best weights). TensorFlow's op
    determinism is on during the runs.

    Args:
        split: the data; the first `train_size` training samples are used.
        techniques: names from `TECHNIQUE_NAMES`; "none" is the baseline.
        epochs: epochs per run.
        train_size: training samples used (None: all of them).
        batch_size: batch size.
        label_noise: share of the training subset's labels replaced by a wrong
            class (`keras_optnotes.data.corrupt_labels`, seeded with `seed`); the
            validation labels stay clean. Training loss and accuracy are scored
            against the labels trained on.
        seed: seed of the weights, the label noise, the other noise and the batch
            order.
        verbose: print one line per run as it starts.

    Returns:
        One `AblationResult` per technique, in the order given.
    """
    label_noise = check_in_range("label_noise", label_noise, 0.0, 1.0)
    unknown = [t for t in techniques if t not in _BY_NAME]
    if unknown:
        raise ValueError(
            f"Unknown technique(s) {unknown}; accepted: {', '.join(TECHNIQUE_NAMES)}."
        )
    split = Split(
        x_train=split.x_train[:train_size],
        y_train=corrupt_labels(
            split.y_train[:train_size], label_noise, split.num_classes, seed=seed
        ),
        x_val=split.x_val,
        y_val=split.y_val,
        num_classes=split.num_classes,
        name=split.name,
    )
    results = []
    with op_determinism():
        for index, technique in enumerate(techniques, start=1):
            if verbose:
                print(f"[{index}/{len(techniques)}] {technique}", flush=True)
            results.append(_train_one(split, technique, epochs, batch_size, seed))
    return results


def plot_gaps(results: Sequence[AblationResult], path: Path, title: str) -> None:
    """Bar charts of the loss gap and the error gap per technique, baseline in grey."""
    figure = new_figure(figsize=(10, 0.42 * len(results) + 1.6), layout="constrained")
    panels = figure.subplots(1, 2, sharey=True)
    names = [r.technique for r in results]
    colors = ["0.55" if r.technique == "none" else "tab:blue" for r in results]
    for axes, gaps, label, fmt in (
        (
            panels[0],
            [r.loss_gap for r in results],
            "loss gap: validation - train cross-entropy",
            "{:.3f}",
        ),
        (
            panels[1],
            [100.0 * r.accuracy_gap for r in results],
            "error gap: train - validation accuracy (points)",
            "{:.1f}",
        ),
    ):
        axes.barh(names, gaps, color=colors)
        axes.axvline(0.0, color="black", linewidth=0.8)
        for row, gap in enumerate(gaps):
            axes.annotate(
                " " + fmt.format(gap),
                (max(gap, 0.0), row),
                va="center",
                fontsize="small",
            )
        axes.set_xlabel(label)
        axes.grid(True, axis="x", alpha=0.3)
        axes.margins(x=0.15)
    panels[0].invert_yaxis()
    figure.suptitle(title, fontsize="medium")
    figure.savefig(path, dpi=110)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the options of `keras-optnotes regularize` to `parser`."""
    add_dataset_argument(parser)
    parser.add_argument(
        "--techniques",
        default=None,
        metavar="all|NAME,...",
        help=f"'all' (default) or a comma-separated list of: "
        f"{', '.join(TECHNIQUE_NAMES)}",
    )
    parser.add_argument(
        "--epochs",
        type=positive_int,
        default=None,
        metavar="N",
        help=f"epochs per run (default: {DEFAULT_EPOCHS}; --quick: {QUICK_EPOCHS})",
    )
    parser.add_argument(
        "--train-size",
        type=positive_int,
        default=None,
        metavar="N",
        help=f"training samples used, few enough to overfit (default: "
        f"{DEFAULT_TRAIN_SIZE}; --quick: {QUICK_TRAIN_SIZE})",
    )
    parser.add_argument(
        "--label-noise",
        type=fraction,
        default=DEFAULT_LABEL_NOISE,
        metavar="F",
        help="share of the training labels replaced by a wrong class, the noise "
        f"there is to overfit; 0 for clean labels (default: {DEFAULT_LABEL_NOISE})",
    )
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        default=DEFAULT_BATCH_SIZE,
        metavar="B",
        help=f"batch size (default: {DEFAULT_BATCH_SIZE})",
    )
    add_seed_argument(parser, "the weights, the split, the noise and the batch order")
    add_output_arguments(
        parser,
        DEFAULT_OUT,
        f"{QUICK_TRAIN_SIZE} training samples, {QUICK_EPOCHS} epochs, techniques "
        f"{','.join(QUICK_TECHNIQUES)} unless --techniques is given",
    )


def run(args: argparse.Namespace) -> int:
    """Runs `keras-optnotes regularize` with parsed arguments; returns exit status."""
    epochs = args.epochs or (QUICK_EPOCHS if args.quick else DEFAULT_EPOCHS)
    train_size = args.train_size or (
        QUICK_TRAIN_SIZE if args.quick else DEFAULT_TRAIN_SIZE
    )
    parse_techniques(args.techniques)  # unknown names fail before any work
    from keras_optnotes import data

    with output_folder(args.out) as staging:
        try:
            split = data.load(
                args.dataset, validation_fraction=VALIDATION_FRACTION, seed=args.seed
            )
        except (ImportError, DatasetUnavailableError) as error:
            raise UsageError(f"--dataset {args.dataset}: {error}") from error
        images = len(split.input_shape) == 3
        techniques = parse_techniques(args.techniques, images=images)
        if args.quick and args.techniques is None:
            techniques = tuple(t for t in QUICK_TECHNIQUES if t in techniques)
        train_size = min(train_size, len(split.x_train))
        title = (
            f"{split.name}: {train_size} training samples "
            f"({args.label_noise:.0%} of their labels wrong) and {len(split.x_val)} "
            f"validation samples, {epochs} epochs, batch {args.batch_size}, "
            f"seed {args.seed}"
        )
        results = run_ablation(
            split,
            techniques,
            epochs=epochs,
            train_size=train_size,
            batch_size=args.batch_size,
            label_noise=args.label_noise,
            seed=args.seed,
            verbose=True,
        )
        rows = [r.table_row() for r in results]
        table = markdown_table(TABLE_COLUMNS, rows)
        summary = f"{title}."
        written = write_report(
            staging,
            NAME,
            summary=summary,
            table=table,
            columns=TABLE_COLUMNS,
            rows=rows,
            plot=lambda path: plot_gaps(results, path, title),
        )
    print_report(args.out, summary, table, written)
    return 0

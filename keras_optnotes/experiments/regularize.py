"""What each of the notes' regularizers does to the generalization gap: an ablation.

The same network is trained from the same initial weights, on the same small training
subset with the same labels, once with no regularization and once with each technique
alone. Every trained model is then scored the same way, in inference mode on clean
inputs: the plain cross-entropy (no penalty, no smoothing) and the accuracy, on the
training subset (against the labels it was trained on) and on the validation set.
`keras-optnotes regularize` is this experiment with a command line, a table, a CSV
file and a chart of both gaps.

The design, and why:

- Something to overfit. 20 % of the training subset's labels are replaced by a wrong
  class (`label_noise=0.2`, symmetric noise as in Zhang et al. 2017 and Arpit et
  al. 2017; the validation labels stay clean). An unregularized network fits every
  training label, the wrong ones too: that memorization is the overfitting, and how
  far each technique resists it is what its gap shows. On clean digits the 128
  samples leave little to memorize: every run fits them, the gap is the validation
  digits that are hard, and the techniques moved it by about as much as a change of
  seed did (docs/guides/regularization.md; `label_noise=0` runs that design).
- Two gaps. The loss gap (validation - training cross-entropy) is the one the chart
  shows first and the tests assert on; the error gap (training accuracy - validation
  accuracy) is the textbook generalization gap of a classifier. With noisy training
  labels the error gap can be negative: a network that learned the digits rather
  than the wrong labels is more accurate on the clean validation labels than on its
  noisy training labels.
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
- Half the digits (898) are the validation set (`VALIDATION_FRACTION`), so that one
  validation sample is about 0.1 point of accuracy; single runs still differ between
  seeds, so only the orderings that held on every seed measured are asserted in the
  tests.

Example, two techniques on one seed, with per-epoch validation curves:

>>> from keras_optnotes import data  # doctest: +SKIP
>>> from keras_optnotes.experiments.regularize import VALIDATION_FRACTION, run_ablation
>>> split = data.load("digits", validation_fraction=VALIDATION_FRACTION, seed=1)
>>> ablation = run_ablation(split, ["none", "dropout"], seed=1, validation_curves=True)
>>> dropout = ablation.get("dropout")
>>> dropout.val_accuracy, dropout.loss_gap, dropout.history["val_accuracy"]
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from keras_optnotes.checks import check_bool, check_in_range, check_integer
from keras_optnotes.experiments._common import Progress, RunsResult, op_determinism

if TYPE_CHECKING:
    from keras_optnotes.data import Split


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
# The arguments of `keras_optnotes.data.augment` / `augmented_batches` per technique.
_RECIPES: dict[str, dict] = {
    "augmentation": AUGMENTATION,
    "mixup": {"mixup_alpha": MIXUP_ALPHA},
    "cutmix": {"cutmix_alpha": CUTMIX_ALPHA},
}

WIDTH = 512
LEARNING_RATE = 1e-3
DEFAULT_EPOCHS = 150
DEFAULT_TRAIN_SIZE = 128
# Share of the training subset's labels replaced by a wrong class: the noise that an
# unregularized network memorizes and a regularizer should resist.
DEFAULT_LABEL_NOISE = 0.2
# Half the data scores the runs: a large validation set keeps the gaps' noise low.
# Load the split with it: `data.load(name, validation_fraction=VALIDATION_FRACTION)`.
VALIDATION_FRACTION = 0.5
DEFAULT_BATCH_SIZE = 32

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
class TechniqueRun:
    """One technique's training run, scored on clean data in inference mode.

    Attributes:
        technique: the technique's name, one of `TECHNIQUE_NAMES`.
        setting: its hyper-parameter, in words.
        train_loss: cross-entropy on the training subset, against the labels trained
            on (some of them wrong when there is label noise).
        val_loss: cross-entropy on the validation set.
        train_accuracy: accuracy on the training subset, against the labels trained
            on.
        val_accuracy: accuracy on the validation set.
        epochs_run: epochs trained (fewer than asked when early stopping stopped).
        history: Keras' `History.history` of the run as tuples, one value per epoch:
            `loss`, the training objective as trained (penalty, smoothing, noise and
            mixing included); for early stopping also `val_loss` and `prechelt_gl`.
            With `run_ablation(..., validation_curves=True)` every run also has
            `accuracy` and `cross_entropy` (training batches, training mode, against
            the labels trained on: mixed ones for MixUp and CutMix), `val_loss` (the
            objective on the validation set), `val_accuracy` and `val_cross_entropy`
            (the plain cross-entropy, comparable across techniques).
    """

    technique: str
    setting: str
    train_loss: float
    val_loss: float
    train_accuracy: float
    val_accuracy: float
    epochs_run: int
    history: dict[str, tuple[float, ...]]

    @property
    def loss_gap(self) -> float:
        """`val_loss - train_loss`, the gap the command's chart shows first."""
        return self.val_loss - self.train_loss

    @property
    def accuracy_gap(self) -> float:
        """`train_accuracy - val_accuracy`: the error gap, validation error minus
        training error."""
        return self.train_accuracy - self.val_accuracy

    def table_row(self) -> list:
        """The row of `TABLE_COLUMNS` for this run."""
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


@dataclass(frozen=True)
class Ablation(RunsResult):
    """The result of `run_ablation`: the settings and one run per technique.

    Attributes:
        dataset: the split's name.
        train_samples: training samples used.
        val_samples: validation samples scored.
        label_noise: share of the training labels replaced by a wrong class.
        epochs: epochs asked for per run.
        batch_size: batch size.
        seed: seed of the weights, the label noise, the other noise and the batch
            order.
        runs: one `TechniqueRun` per technique, in the order run.

    `get(name)` is the run of one technique, `table_rows()` the rows of
    `TABLE_COLUMNS`.
    """

    dataset: str
    train_samples: int
    val_samples: int
    label_noise: float
    epochs: int
    batch_size: int
    seed: int
    runs: tuple[TechniqueRun, ...]
    _run_name: ClassVar[str] = "technique"


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
    """The training batches: a `tf.data` pipeline on TensorFlow, a
    `keras.utils.PyDataset` of arrays on the other backends (no TensorFlow needed).

    Both shuffle the (small) training set anew at each epoch, seeded, run the
    technique's Keras layers once on the whole shuffled set (the layers' fixed cost
    per call dominates on 8x8 images; MixUp and CutMix then pair each sample with a
    partner drawn from the whole set), and cut it into batches. The random draws of
    the two differ, so a run on TensorFlow and a run elsewhere are not the same run.
    """
    import keras

    one_hot = np.eye(num_classes, dtype="float32")[y]
    recipe = _RECIPES.get(technique, {})
    if keras.backend.backend() != "tensorflow":
        from keras_optnotes.data import augmented_batches

        return augmented_batches(
            x,
            one_hot,
            batch_size=batch_size,
            augment_batch_size=len(x),
            seed=seed,
            **recipe,
        )
    from keras_optnotes._tensorflow import import_tensorflow
    from keras_optnotes.data import augment

    tf = import_tensorflow("the regularize experiment's tf.data pipeline")
    dataset = tf.data.Dataset.from_tensor_slices((x, one_hot)).shuffle(
        len(x), seed=seed, reshuffle_each_iteration=True
    )
    if recipe:
        dataset = augment(dataset.batch(len(x)), seed=seed, **recipe).unbatch()
    # Repeated, with `steps_per_epoch` in `fit`: one iterator for the whole run, so
    # the pipeline's functions are set up once rather than at every epoch.
    return dataset.batch(batch_size).repeat().prefetch(2)


def _validation_data(split: Split):
    """The validation set, one-hot, in batches of 1024, in a fixed order."""
    import keras

    one_hot = np.eye(split.num_classes, dtype="float32")[split.y_val]
    if keras.backend.backend() != "tensorflow":
        from keras_optnotes.data import augmented_batches

        # No layer asked for: the arrays as they are.
        return augmented_batches(split.x_val, one_hot, batch_size=1024, shuffle=False)
    from keras_optnotes._tensorflow import import_tensorflow

    tf = import_tensorflow("the regularize experiment's tf.data pipeline")
    # A cached dataset: numpy validation data would be re-wrapped every epoch.
    return (
        tf.data.Dataset.from_tensor_slices((split.x_val, one_hot)).batch(1024).cache()
    )


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
    validation_curves: bool = False,
) -> TechniqueRun:
    import keras

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
        # Metrics read the predictions only: they change no step of the training.
        metrics=[
            keras.metrics.CategoricalAccuracy(name="accuracy"),
            keras.metrics.CategoricalCrossentropy(name="cross_entropy"),
        ]
        if validation_curves
        else None,
    )
    # Only early stopping looks at the validation set during training; the other
    # runs are scored after training, which spares them a per-epoch evaluation.
    callbacks: list[Callable] = []
    validation = None
    if technique == "early_stopping":
        callbacks.append(PrecheltEarlyStopping("GL", alpha=GL_ALPHA))
    if technique == "early_stopping" or validation_curves:
        validation = _validation_data(split)
    training = _training_data(
        split.x_train, split.y_train, technique, split.num_classes, batch_size, seed
    )
    history = model.fit(
        training,
        epochs=epochs,
        # The tf.data pipeline repeats; a PyDataset has a length.
        steps_per_epoch=None
        if isinstance(training, keras.utils.PyDataset)
        else steps_per_epoch,
        validation_data=validation,
        callbacks=callbacks,
        shuffle=False,  # the dataset shuffles, seeded
        verbose=0,
    )
    train_loss, val_loss, train_accuracy, val_accuracy = _score(model, split)
    setting = _BY_NAME[technique].setting
    if technique == "input_noise":
        setting = f"{setting} = {input_noise:.3g}"
    return TechniqueRun(
        technique=technique,
        setting=setting,
        train_loss=train_loss,
        val_loss=val_loss,
        train_accuracy=train_accuracy,
        val_accuracy=val_accuracy,
        epochs_run=len(history.history["loss"]),
        history={k: tuple(float(v) for v in vs) for k, vs in history.history.items()},
    )


def check_techniques(techniques: Sequence[str], images: bool = True) -> tuple[str, ...]:
    """`techniques` as a tuple after checking each is one of `TECHNIQUE_NAMES`.

    Args:
        techniques: technique names.
        images: whether the samples are (H, W, C) images; if not, the image-only
            techniques (augmentation, MixUp, CutMix) are refused.

    Raises:
        ValueError: no technique, an unknown one, or an image-only one without
            images, naming it and what is accepted.
    """
    if isinstance(techniques, str) or not isinstance(techniques, Sequence):
        raise ValueError(
            "Argument `techniques` must be a sequence of names from "
            f"{', '.join(TECHNIQUE_NAMES)}. Received: techniques={techniques!r}"
        )
    unknown = [t for t in techniques if t not in _BY_NAME]
    if unknown or not techniques:
        raise ValueError(
            f"Argument `techniques` must name at least one of "
            f"{', '.join(TECHNIQUE_NAMES)}. Received: techniques={list(techniques)!r}"
            + (f" (unknown: {', '.join(map(repr, unknown))})" if unknown else "")
        )
    if not images:
        image_only = [t for t in techniques if _BY_NAME[t].images_only]
        if image_only:
            raise ValueError(
                f"Argument `techniques`: {', '.join(image_only)} need image samples "
                "(H, W, C); this split's samples are not images. "
                f"Received: techniques={list(techniques)!r}"
            )
    return tuple(techniques)


def run_ablation(
    split: Split,
    techniques: Sequence[str] = TECHNIQUE_NAMES,
    *,
    epochs: int = DEFAULT_EPOCHS,
    train_size: int | None = DEFAULT_TRAIN_SIZE,
    batch_size: int = DEFAULT_BATCH_SIZE,
    label_noise: float = DEFAULT_LABEL_NOISE,
    seed: int = 0,
    validation_curves: bool = False,
    progress: Progress | None = None,
) -> Ablation:
    """Trains the ablation network once per technique and scores each run.

    Every run starts from the same initial weights (in the layers the variants
    share), sees the same `train_size` training samples in the same shuffled order
    and is trained with Adam (η = 1e-3, cosine decay to 0 over `epochs` epochs) on
    the cross-entropy for `epochs` epochs (early stopping may stop sooner and
    restores its best weights). The backend's deterministic kernels are on during
    the runs (TensorFlow's op determinism, PyTorch's deterministic algorithms;
    nothing to switch on JAX, whose CPU kernels are deterministic): on CPU a seed's
    run repeats bit for bit on each backend, but the backends' runs differ from
    one another (on TensorFlow the data go through `tf.data`, elsewhere through a
    `keras.utils.PyDataset`, with other random draws).
    Each run costs one compilation and `epochs` passes over `train_size` samples,
    so a few techniques on a few seeds are cheap: call it once per seed.

    Args:
        split: the data, best loaded with `validation_fraction=VALIDATION_FRACTION`;
            the first `train_size` training samples are used.
        techniques: names from `TECHNIQUE_NAMES`, in the order to run; "none" is
            the baseline. The image-only ones need (H, W, C) samples.
        epochs: epochs per run, ≥ 1.
        train_size: training samples used, ≥ 1 (None: all of them).
        batch_size: batch size, ≥ 1.
        label_noise: share of the training subset's labels replaced by a wrong
            class, in [0, 1] (`keras_optnotes.data.corrupt_labels`, seeded with
            `seed`); the validation labels stay clean. Training loss and accuracy
            are scored against the labels trained on.
        seed: seed of the weights, the label noise, the other noise and the batch
            order, ≥ 0.
        validation_curves: also record every run's validation loss, accuracy and
            plain cross-entropy after each epoch in its `history` (one evaluation
            per epoch; the training and the final scores are the same as without).
        progress: called with one line as each run starts.

    Returns:
        An `Ablation` with one `TechniqueRun` per technique, in the order given.

    Raises:
        ValueError: an unknown or unusable technique, or an argument out of range;
            before any training.
    """
    images = len(split.input_shape) == 3
    techniques = check_techniques(techniques, images=images)
    epochs = check_integer("epochs", epochs, 1)
    if train_size is not None:
        train_size = check_integer("train_size", train_size, 1)
    batch_size = check_integer("batch_size", batch_size, 1)
    label_noise = check_in_range("label_noise", label_noise, 0.0, 1.0)
    seed = check_integer("seed", seed, 0)
    validation_curves = check_bool("validation_curves", validation_curves)

    from keras_optnotes.data import corrupt_labels

    split = replace(
        split,
        x_train=split.x_train[:train_size],
        y_train=corrupt_labels(
            split.y_train[:train_size], label_noise, split.num_classes, seed=seed
        ),
    )
    runs = []
    with op_determinism():
        for index, technique in enumerate(techniques, start=1):
            if progress is not None:
                progress(f"[{index}/{len(techniques)}] {technique}")
            runs.append(
                _train_one(
                    split, technique, epochs, batch_size, seed, validation_curves
                )
            )
    return Ablation(
        dataset=split.name,
        train_samples=len(split.x_train),
        val_samples=len(split.x_val),
        label_noise=label_noise,
        epochs=epochs,
        batch_size=batch_size,
        seed=seed,
        runs=tuple(runs),
    )

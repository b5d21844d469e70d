"""Early stopping with Prechelt's criteria GL, PQ and UP."""

from __future__ import annotations

import math
import warnings

import keras

from keras_optnotes.checks import check_bool, check_in_range, check_integer

_DEFAULT_ALPHA = {"GL": 5.0, "PQ": 0.5}
MODES = ("auto", "min", "max")


def direction_from_name(name: str) -> str | None:
    """ "min" or "max" for a quantity Keras users name by convention, else None.

    As Keras' `EarlyStopping` reads the name: losses are minimized; accuracies
    ("acc", "accuracy", "…_accuracy") and AUC are maximized.
    """
    metric = name.removeprefix("val_")
    if metric.endswith("loss"):
        return "min"
    if metric.endswith(("acc", "accuracy")) or metric == "auc" or "auc" in metric:
        return "max"
    return None


def _direction_from_model(name: str, model) -> str | None:
    """The direction a compiled metric of `model` declares for itself (as Keras' own
    monitor callbacks ask it), else None."""
    metric = name.removeprefix("val_")
    for holder in getattr(model, "metrics", []):
        for m in getattr(holder, "metrics", [holder]):
            if m.name == metric and hasattr(m, "_direction"):
                return "max" if m._direction == "up" else "min"
    return None


def _check_name(name: str, value) -> str:
    if isinstance(value, str) and value:
        return value
    raise ValueError(
        f"Argument `{name}` must be the name of a quantity in the epoch logs, such "
        f"as 'val_loss'. Received: {name}={value!r}"
    )


def _generalization_loss(validation: float, best_validation: float) -> float:
    if best_validation == 0.0:
        return 0.0 if validation == 0.0 else math.inf
    return 100.0 * (validation / best_validation - 1.0)


def _training_progress(strip: list[float]) -> float:
    lowest = min(strip)
    if lowest == 0.0:
        return 0.0 if sum(strip) == 0.0 else math.inf
    return 1000.0 * (sum(strip) / (len(strip) * lowest) - 1.0)


def _progress_quotient(generalization_loss: float, progress: float) -> float:
    if progress == 0.0:
        return 0.0 if generalization_loss == 0.0 else math.inf
    return generalization_loss / progress


@keras.saving.register_keras_serializable(package="keras_optnotes")
class PrecheltEarlyStopping(keras.callbacks.Callback):
    """Stops training by one of Prechelt's criteria GL_α, PQ_α or UP_s.

    With epochs counted t = 1, 2, …, E_va(t) the validation error (`monitor`),
    E_tr(t) the training error (`train_monitor`) and k = `strip_length`. A quantity to
    maximize, such as an accuracy (`mode="max"`), enters as its error 1 − value:

        E_opt(t) = min_{t' ≤ t} E_va(t')                       (best so far)
        GL(t)    = 100 · (E_va(t) / E_opt(t) − 1)              (generalization loss)
        P_k(t)   = 1000 · (Σ_{t'=t−k+1..t} E_tr(t')
                           / (k · min_{t'=t−k+1..t} E_tr(t')) − 1)  (training progress)

    - "GL": stop after the first epoch t with GL(t) > α.
    - "PQ": stop after the first end-of-strip epoch t (t a multiple of k) with
      GL(t) / P_k(t) > α.
    - "UP": stop after the end-of-strip epoch t at which the validation error has
      risen at s successive strip ends: E_va(t) > E_va(t − k), E_va(t − k) >
      E_va(t − 2k), …, s comparisons in all (s = `successive_strips`).

    Each epoch the criterion's current value is written into the logs, and so into
    `History.history`, as `prechelt_gl`, `prechelt_pq` (NaN before the first full
    strip) or `prechelt_up` (the current run of successive rising strip ends).

    Keras' `EarlyStopping` compares one metric with its own best value over a patience
    window; these criteria compare validation with training progress (PQ) or look
    at the trend over strips (UP), as Prechelt defines them.

    Args:
        criterion: "GL", "PQ" or "UP" (case-insensitive).
        alpha: the threshold α > 0 of GL and PQ (in percent for GL). Defaults to 5.0
            for GL and 0.5 for PQ; must be left None for UP.
        strip_length: k ≥ 1, the epochs in a training strip (PQ and UP).
        successive_strips: s ≥ 1 for UP (default 3); must be left None otherwise.
        monitor: the validation quantity E_va, e.g. "val_loss" or "val_accuracy".
        train_monitor: the training quantity E_tr of P_k, e.g. "loss"; its direction
            is read as `mode="auto"` reads `monitor`'s.
        mode: "min" (an error or a loss), "max" (a quantity in [0, 1] to maximize,
            such as an accuracy or AUC; E = 1 − value) or "auto" (default): from the
            name as Keras' `EarlyStopping` reads it (losses min; "acc", "accuracy",
            "auc" max), else from the direction of the model's compiled metric of
            that name (Keras builds those in the first epoch); when neither tells,
            a `ValueError` at the end of the first epoch, as Keras' `EarlyStopping`.
        restore_best_weights: when training stops, set the model's weights back to
            those of the epoch with the lowest E_va.
        verbose: 1 prints a line when the criterion stops training.

    Returns:
        A `keras.callbacks.Callback`; after training `stopped_epoch` (1-based,
        0 when it never stopped), `best_epoch` (1-based) and `best_value` (the
        monitored value there) say what happened; `direction` is "min" or "max".

    Example:
        >>> stop = PrecheltEarlyStopping("GL", alpha=2.0)
        >>> model.fit(x, y, validation_split=0.2, epochs=200, callbacks=[stop])

    References:
        Prechelt, "Early Stopping — But When?", in Neural Networks: Tricks of the
        Trade, Springer LNCS 1524, 1998, pp. 55–69.
    """

    def __init__(
        self,
        criterion: str = "GL",
        alpha: float | None = None,
        strip_length: int = 5,
        successive_strips: int | None = None,
        monitor: str = "val_loss",
        train_monitor: str = "loss",
        restore_best_weights: bool = True,
        verbose: int = 0,
        mode: str = "auto",
    ):
        super().__init__()
        key = criterion.upper() if isinstance(criterion, str) else criterion
        if key not in ("GL", "PQ", "UP"):
            raise ValueError(
                "`criterion` must be one of 'GL', 'PQ', 'UP'. "
                f"Received: criterion={criterion!r}"
            )
        if key == "UP":
            if alpha is not None:
                raise ValueError(
                    "`alpha` applies to the GL and PQ criteria only; use "
                    f"`successive_strips` for UP. Received: alpha={alpha!r}"
                )
            successive_strips = check_integer(
                "successive_strips",
                3 if successive_strips is None else successive_strips,
                1,
            )
        else:
            if successive_strips is not None:
                raise ValueError(
                    "`successive_strips` applies to the UP criterion only. "
                    f"Received: successive_strips={successive_strips!r}"
                )
            alpha = check_in_range(
                "alpha",
                _DEFAULT_ALPHA[key] if alpha is None else alpha,
                0.0,
                low_inclusive=False,
            )
        strip_length = check_integer("strip_length", strip_length, 1)
        if mode not in MODES:
            raise ValueError(
                f"Argument `mode` must be one of {MODES}. Received: mode={mode!r}"
            )
        self.criterion = key
        self.alpha = alpha
        self.strip_length = strip_length
        self.successive_strips = successive_strips
        self.monitor = _check_name("monitor", monitor)
        self.train_monitor = _check_name("train_monitor", train_monitor)
        self.restore_best_weights = check_bool(
            "restore_best_weights", restore_best_weights
        )
        self.verbose = check_integer("verbose", verbose, 0)
        self.mode = mode
        # None until on_train_begin can ask the model's metrics.
        self.direction = mode if mode != "auto" else direction_from_name(self.monitor)
        self.log_key = f"prechelt_{key.lower()}"

    def _resolve(self, name: str, direction: str | None, final: bool) -> str | None:
        direction = direction or _direction_from_model(name, self.model)
        if direction is None and final:
            raise ValueError(
                f"PrecheltEarlyStopping cannot tell whether monitor={name!r} is to be "
                "minimized or maximized (mode='auto': neither its name nor a compiled "
                "metric says); pass mode='min' or mode='max'."
            )
        return direction

    def on_train_begin(self, logs=None):
        self.direction = self._resolve(self.monitor, self.direction, final=False)
        self._train_direction = direction_from_name(self.train_monitor)
        self.validation_history: list[float] = []
        self.training_history: list[float] = []
        self.best_error = math.inf
        self.best_value = None
        self.best_epoch = 0
        self.best_weights = None
        self.stopped_epoch = 0
        self.rising_strips = 0

    def _read(self, logs: dict, key: str, direction: str) -> float:
        """The error E of quantity `key`: its value ("min") or 1 − value ("max")."""
        if key not in logs:
            raise ValueError(
                f"PrecheltEarlyStopping needs `{key}` in the epoch logs but they "
                f"hold {sorted(logs)}; pass validation data to `fit` or choose "
                "`monitor` / `train_monitor` among those keys."
            )
        value = float(logs[key])
        if direction == "min":
            return value
        if not 0.0 <= value <= 1.0:
            raise ValueError(
                f"PrecheltEarlyStopping with `{key}` to maximize uses the error "
                f"1 − {key}, so {key} must lie in [0, 1]; received {key}={value!r}. "
                "Monitor an error or a loss with mode='min' instead."
            )
        return 1.0 - value

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        self.direction = self._resolve(self.monitor, self.direction, final=True)
        if self.criterion == "PQ":
            self._train_direction = self._resolve(
                self.train_monitor, self._train_direction, final=True
            )
        validation = self._read(logs, self.monitor, self.direction)
        self.validation_history.append(validation)
        if self.criterion == "PQ":
            self.training_history.append(
                self._read(logs, self.train_monitor, self._train_direction)
            )
        t = len(self.validation_history)
        if validation < self.best_error:
            self.best_error = validation
            self.best_value = float(logs[self.monitor])
            self.best_epoch = t
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
        generalization_loss = _generalization_loss(validation, self.best_error)
        k = self.strip_length
        strip_end = t % k == 0
        if self.criterion == "GL":
            value = generalization_loss
            stop = value > self.alpha
        elif self.criterion == "PQ":
            value = math.nan
            if t >= k:
                progress = _training_progress(self.training_history[-k:])
                value = _progress_quotient(generalization_loss, progress)
            stop = strip_end and value > self.alpha
        else:
            if strip_end and t > k:
                rose = validation > self.validation_history[t - k - 1]
                self.rising_strips = self.rising_strips + 1 if rose else 0
            value = float(self.rising_strips)
            stop = strip_end and self.rising_strips >= self.successive_strips
        logs[self.log_key] = value
        if stop:
            self.stopped_epoch = t
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if not self.stopped_epoch:
            return
        if self.verbose:
            best = (
                "none finite" if self.best_value is None else f"{self.best_value:.6g}"
            )
            print(
                f"Epoch {self.stopped_epoch}: {self.criterion} early stopping; best "
                f"{self.monitor} {best} at epoch {self.best_epoch}."
            )
        if self.restore_best_weights:
            if self.best_weights is None:
                warnings.warn(
                    f"No finite `{self.monitor}` was seen; weights not restored.",
                    stacklevel=2,
                )
            else:
                self.model.set_weights(self.best_weights)

    def get_config(self) -> dict:
        return {
            "criterion": self.criterion,
            "alpha": self.alpha,
            "strip_length": self.strip_length,
            "successive_strips": self.successive_strips,
            "monitor": self.monitor,
            "train_monitor": self.train_monitor,
            "restore_best_weights": self.restore_best_weights,
            "verbose": self.verbose,
            "mode": self.mode,
        }

    @classmethod
    def from_config(cls, config: dict) -> PrecheltEarlyStopping:
        return cls(**config)

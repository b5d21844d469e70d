"""Float64 NumPy implementations of the update rules, written from their equations.

They share nothing with the package: each is the equation as printed, one parameter
array at a time. `step(theta, g, t)` returns the new θ and mutates the rule's state;
t counts from 1.
"""

from __future__ import annotations

import numpy as np


class GradientDescent:
    def __init__(self, lr, shape):
        self.lr = lr

    def step(self, theta, g, t):
        return theta - self.lr * g


class Momentum:
    def __init__(self, lr, shape, momentum=0.9):
        self.lr, self.beta = lr, momentum
        self.a = np.zeros(shape)

    def step(self, theta, g, t):
        self.a = self.beta * self.a + g
        return theta - self.lr * self.a


class NesterovMomentum:
    """The look-ahead form: the weights are φ = θ − η β a."""

    def __init__(self, lr, shape, momentum=0.9):
        self.lr, self.beta = lr, momentum
        self.a = np.zeros(shape)

    def step(self, phi, g, t):
        self.a = self.beta * self.a + g
        return phi - self.lr * (g + self.beta * self.a)


def _divide(numerator, accumulator, epsilon, inside):
    if inside:
        return numerator / np.sqrt(accumulator + epsilon)
    return numerator / (np.sqrt(accumulator) + epsilon)


class Adagrad:
    def __init__(
        self,
        lr,
        shape,
        epsilon=1e-8,
        initial_accumulator_value=0.0,
        epsilon_inside_sqrt=True,
    ):
        self.lr, self.eps, self.inside = lr, epsilon, epsilon_inside_sqrt
        self.G = np.full(shape, initial_accumulator_value, dtype=np.float64)

    def step(self, theta, g, t):
        self.G = self.G + g**2
        return theta - _divide(self.lr * g, self.G, self.eps, self.inside)


class RMSprop:
    def __init__(self, lr, shape, rho=0.9, epsilon=1e-8, epsilon_inside_sqrt=True):
        self.lr, self.rho, self.eps, self.inside = lr, rho, epsilon, epsilon_inside_sqrt
        self.G = np.zeros(shape)

    def step(self, theta, g, t):
        self.G = self.rho * self.G + (1 - self.rho) * g**2
        return theta - _divide(self.lr * g, self.G, self.eps, self.inside)


class Adadelta:
    """Zeiler 2012, Algorithm 1, with the package's extra η (η = 1 is the paper)."""

    def __init__(self, lr, shape, rho=0.95, epsilon=1e-6):
        self.lr, self.rho, self.eps = lr, rho, epsilon
        self.Eg = np.zeros(shape)
        self.Ed = np.zeros(shape)

    def step(self, theta, g, t):
        self.Eg = self.rho * self.Eg + (1 - self.rho) * g**2
        delta = -(np.sqrt(self.Ed + self.eps) / np.sqrt(self.Eg + self.eps)) * g
        self.Ed = self.rho * self.Ed + (1 - self.rho) * delta**2
        return theta + self.lr * delta


class Adam:
    def __init__(
        self,
        lr,
        shape,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        epsilon_inside_sqrt=True,
        amsgrad=False,
    ):
        self.lr, self.b1, self.b2, self.eps = lr, beta_1, beta_2, epsilon
        self.inside, self.amsgrad = epsilon_inside_sqrt, amsgrad
        self.m = np.zeros(shape)
        self.v = np.zeros(shape)
        self.v_hat = np.zeros(shape)

    def step(self, theta, g, t):
        self.m = self.b1 * self.m + (1 - self.b1) * g
        self.v = self.b2 * self.v + (1 - self.b2) * g**2
        v = self.v
        if self.amsgrad:
            self.v_hat = np.maximum(self.v_hat, self.v)
            v = self.v_hat
        if self.inside:
            rate = self.lr * np.sqrt(1 - self.b2**t) / (1 - self.b1**t)
            return theta - rate * self.m / np.sqrt(v + self.eps)
        m_hat = self.m / (1 - self.b1**t)
        v_corr = v / (1 - self.b2**t)
        return theta - self.lr * m_hat / (np.sqrt(v_corr) + self.eps)


RULES = {
    cls.__name__: cls
    for cls in (
        GradientDescent,
        Momentum,
        NesterovMomentum,
        Adagrad,
        RMSprop,
        Adadelta,
        Adam,
    )
}


# -- the large-batch remedies ------------------------------------------------------


class LARS:
    """You et al. 2017, Algorithm 1; `adapt=False` is the plain step of rank ≤ 1
    variables (no trust ratio, no decay)."""

    def __init__(
        self,
        lr,
        shape,
        momentum=0.9,
        weight_decay=0.0,
        trust_coefficient=0.001,
        epsilon=1e-8,
        adapt=True,
    ):
        self.lr, self.m, self.wd = lr, momentum, weight_decay
        self.tc, self.eps, self.adapt = trust_coefficient, epsilon, adapt
        self.v = np.zeros(shape)

    def step(self, w, g, t):
        ratio, d = 1.0, g
        if self.adapt:
            d = g + self.wd * w
            w_norm, g_norm = np.linalg.norm(w), np.linalg.norm(g)
            if w_norm > 0 and g_norm > 0:
                ratio = self.tc * w_norm / (g_norm + self.wd * w_norm + self.eps)
        self.v = self.m * self.v + self.lr * ratio * d
        return w - self.v


class KerasAdamW:
    """Keras' own `keras.optimizers.AdamW` as its documentation writes it: decoupled
    decay w ← w − η λ w, then m, v and w ← w − η √(1−β2^t)/(1−β1^t) · m / (√v + ε)."""

    def __init__(
        self, lr, shape, weight_decay=0.0, beta_1=0.9, beta_2=0.999, epsilon=1e-7
    ):
        self.lr, self.wd, self.b1, self.b2, self.eps = (
            lr,
            weight_decay,
            beta_1,
            beta_2,
            epsilon,
        )
        self.m = np.zeros(shape)
        self.v = np.zeros(shape)

    def step(self, w, g, t):
        w = w - self.lr * self.wd * w
        self.m = self.b1 * self.m + (1 - self.b1) * g
        self.v = self.b2 * self.v + (1 - self.b2) * g**2
        rate = self.lr * np.sqrt(1 - self.b2**t) / (1 - self.b1**t)
        return w - rate * self.m / (np.sqrt(self.v) + self.eps)


class Lookahead:
    """Zhang et al. 2019, Algorithm 1, around any reference rule above: the slow
    weights start at the initial weights; after every k-th inner step
    φ ← φ + α (θ − φ) and θ ← φ."""

    def __init__(self, inner, initial, sync_period=5, slow_step_size=0.5):
        self.inner, self.k, self.alpha = inner, sync_period, slow_step_size
        self.slow = np.array(initial, dtype=np.float64)

    def step(self, theta, g, t):
        theta = self.inner.step(theta, g, t)
        if t % self.k == 0:
            self.slow = self.slow + self.alpha * (theta - self.slow)
            theta = self.slow.copy()
        return theta

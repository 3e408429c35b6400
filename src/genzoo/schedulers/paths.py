"""Gaussian probability paths: the math under every genzoo scheduler, and the extension point for new paths.

Both diffusion-type methods in genzoo noise data along one *affine* path::

    x_t = alpha_t * data + sigma_t * noise,        noise ~ N(0, I)

- DDPM walks it on a discrete grid with ``alpha = sqrt(alpha_bar_t)`` and
  ``sigma = sqrt(1 - alpha_bar_t)``;
- flow matching walks it in continuous time ``t in [0, 1]`` (noise at ``t = 0``, data at ``t = 1``) along a
  :class:`ProbabilityPath`: the straight one, ``alpha = t`` and ``sigma = 1 - t`` (so ``d_alpha = 1`` and
  ``d_sigma = -1``), by default; any registered path (``genzoo.paths`` entry points, e.g. ``cosine``) through the
  flow schedulers' ``path`` option.

Everything a scheduler needs from a model output -- the data estimate, the noise estimate,
the velocity ``dx_t/dt`` -- follows from ``alpha``, ``sigma`` and, for velocities, their
time derivatives. This module holds those conversions once (:class:`AffinePath`), so the schedulers do not
each carry their own copy. The checks of the schedulers' arguments are in :mod:`genzoo.schedulers.checks`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

#: What a model may be trained to predict, with Diffusers' names where Diffusers has one.
#: ``velocity`` is the flow-matching target ``dx_t/dt = d_alpha * data + d_sigma * noise``;
#: ``v_prediction`` is the (different) diffusion "v" of Salimans & Ho, ``alpha * noise - sigma * data``.
PREDICTION_TYPES = ("epsilon", "sample", "v_prediction", "velocity")
#: The path of the flow schedulers unless their ``path`` option names another.
DEFAULT_PATH = "straight"


def expand_to(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Reshape per-sample coefficients of shape ``(B,)`` (or a scalar) to broadcast against ``like``."""
    values = values.to(device=like.device, dtype=like.dtype).flatten()
    return values.reshape(values.shape[0], *([1] * (like.ndim - 1))) if values.numel() > 1 else values.reshape(())


@dataclass
class AffinePath:
    """Coefficients of ``x_t = alpha * data + sigma * noise`` at one or more times.

    ``alpha`` and ``sigma`` (and ``d_alpha``, ``d_sigma`` for continuous-time paths) are tensors that
    already broadcast against the samples; build them with :func:`expand_to`.
    """

    alpha: torch.Tensor
    sigma: torch.Tensor
    d_alpha: torch.Tensor | None = None
    d_sigma: torch.Tensor | None = None

    def sample(self, data: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """A point on the path: ``x_t``."""
        return self.alpha * data + self.sigma * noise

    def target(self, data: torch.Tensor, noise: torch.Tensor, prediction_type: str) -> torch.Tensor:
        """What a model with ``prediction_type`` should output at ``x_t``."""
        if prediction_type == "epsilon":
            return noise
        if prediction_type == "sample":
            return data
        if prediction_type == "v_prediction":
            return self.alpha * noise - self.sigma * data
        if prediction_type == "velocity":
            self._need_derivatives(prediction_type)
            return self.d_alpha * data + self.d_sigma * noise
        raise _unknown(prediction_type)

    def data_from(self, model_output: torch.Tensor, x_t: torch.Tensor, prediction_type: str) -> torch.Tensor:
        """The data estimate implied by a model output at ``x_t``."""
        if prediction_type == "epsilon":
            return (x_t - self.sigma * model_output) / self.alpha
        if prediction_type == "sample":
            return model_output
        if prediction_type == "v_prediction":
            # Solves x_t = a*x + s*e, v = a*e - s*x for x; a^2 + s^2 = 1 on variance-preserving paths.
            return (self.alpha * x_t - self.sigma * model_output) / (self.alpha**2 + self.sigma**2)
        if prediction_type == "velocity":
            self._need_derivatives(prediction_type)
            det = self.alpha * self.d_sigma - self.sigma * self.d_alpha
            return (self.d_sigma * x_t - self.sigma * model_output) / det
        raise _unknown(prediction_type)

    def velocity_from(self, model_output: torch.Tensor, x_t: torch.Tensor, prediction_type: str) -> torch.Tensor:
        """The velocity ``dx_t/dt`` implied by a model output at ``x_t`` (continuous-time paths only)."""
        self._need_derivatives("velocity")
        if prediction_type == "velocity":
            return model_output
        data = self.data_from(model_output, x_t, prediction_type)
        noise = (x_t - self.alpha * data) / self.sigma
        return self.d_alpha * data + self.d_sigma * noise

    def _need_derivatives(self, what: str) -> None:
        if self.d_alpha is None or self.d_sigma is None:
            raise ValueError(
                f"prediction_type={what!r} needs the time derivatives of the path, which a discrete-time "
                "path does not have; use one of 'epsilon', 'sample', 'v_prediction'."
            )


def _unknown(prediction_type: str) -> ValueError:
    return ValueError(f"Unknown prediction_type={prediction_type!r}; allowed: {', '.join(PREDICTION_TYPES)}.")


# ------------------------------------------------------------------------------------------------ continuous paths
class ProbabilityPath:
    """A Gaussian path in flow time ``t in [0, 1]``: ``x_t = alpha(t) * data + sigma(t) * noise``, pure noise at
    ``t = 0`` (``alpha = 0``, ``sigma = 1``) and the data at ``t = 1`` (``alpha = 1``, ``sigma = 0``).

    A new path is a subclass that gives :meth:`alpha`, :meth:`sigma` and their time derivatives :meth:`d_alpha`,
    :meth:`d_sigma`, registered under the ``genzoo.paths`` entry-point group by its name (genzoo's own: ``straight``
    and ``cosine``); every flow solver then trains and samples on it through its ``path`` option, and the trainer's
    ``--path``. Each of the four takes ``t`` as a tensor (coefficients that broadcast against the samples) or as a
    Python float (one time of a sampling grid, kept in float64); :func:`math_of` picks ``torch`` or ``math`` for it.
    """

    def alpha(self, t):
        """The data's coefficient at ``t`` (0 at ``t = 0``, 1 at ``t = 1``)."""
        raise NotImplementedError

    def sigma(self, t):
        """The noise's coefficient at ``t`` (1 at ``t = 0``, 0 at ``t = 1``)."""
        raise NotImplementedError

    def d_alpha(self, t):
        """``d alpha / dt`` at ``t``."""
        raise NotImplementedError

    def d_sigma(self, t):
        """``d sigma / dt`` at ``t``."""
        raise NotImplementedError

    def at(self, t) -> AffinePath:
        """The path's coefficients and their derivatives at flow time ``t`` (a tensor that broadcasts against the
        samples -- build it with :func:`expand_to` -- or a Python float).

        Args:
            t (float | torch.Tensor): flow time(s) in [0, 1].

        Returns:
            The ``AffinePath`` at ``t``: ``add_noise`` is its ``sample``, ``training_target`` its ``target``.
        """
        return AffinePath(alpha=self.alpha(t), sigma=self.sigma(t), d_alpha=self.d_alpha(t), d_sigma=self.d_sigma(t))

    def velocity(self, model_output: torch.Tensor, x_t: torch.Tensor, t, prediction_type: str) -> torch.Tensor:
        """The velocity ``dx_t/dt`` at ``x_t`` implied by a model's output (itself, for a ``velocity`` model): what an
        ODE solver integrates.

        Args:
            model_output: the model's output at ``x_t``.
            x_t: the point on the path.
            t (float | torch.Tensor): its flow time.
            prediction_type: what the model predicts (``velocity`` or ``sample``).

        Returns:
            The velocity, of the shape of ``x_t``.
        """
        if prediction_type == "velocity":
            return model_output
        return self.at(t).velocity_from(model_output, x_t, prediction_type)

    def data_estimate(self, velocity: torch.Tensor, x_t: torch.Tensor, t) -> torch.Tensor:
        """The data the velocity at ``x_t`` points to, ``E[x_1 | x_t]`` when ``velocity`` is the true one (a step's
        ``pred_original_sample``): ``x_t = alpha * x_1 + sigma * x_0`` and ``v = d_alpha * x_1 + d_sigma * x_0``
        solved for ``x_1``.

        Args:
            velocity: the velocity at ``x_t``.
            x_t: the point on the path.
            t (float | torch.Tensor): its flow time.

        Returns:
            The data estimate, of the shape of ``x_t``.
        """
        return self.at(t).data_from(velocity, x_t, "velocity")

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def math_of(t):
    """``torch`` for a tensor ``t``, ``math`` for a Python number: the functions (``sin``, ``cos``, ...) to apply."""
    return torch if isinstance(t, torch.Tensor) else math


def _ones(t):
    """1 in the form of ``t``: a tensor of ones like it, or the float 1.0."""
    return torch.ones_like(t) if isinstance(t, torch.Tensor) else 1.0


class StraightPath(ProbabilityPath):
    """Flow matching's straight line (Lipman et al. 2022; Liu et al. 2022): ``alpha = t``, ``sigma = 1 - t``, so the
    velocity ``x_1 - x_0`` is the same at every time. Registered as ``straight``, the default."""

    def alpha(self, t):
        return t

    def sigma(self, t):
        return 1 - t

    def d_alpha(self, t):
        return _ones(t)

    def d_sigma(self, t):
        return -_ones(t)

    def data_estimate(self, velocity, x_t, t):
        # The closed form x_t + (1 - t) v (one Euler step to t = 1): what genzoo and Diffusers have always computed.
        return torch.add(x_t, velocity, alpha=1 - t)


class CosinePath(ProbabilityPath):
    """The cosine (trigonometric, variance-preserving) path: ``alpha = sin(pi t / 2)``, ``sigma = cos(pi t / 2)``,
    so ``alpha^2 + sigma^2 = 1`` at every time (the noise-to-data interpolant of Albergo & Vanden-Eijnden 2023).
    Registered as ``cosine``."""

    def alpha(self, t):
        return math_of(t).sin(math.pi / 2 * t)

    def sigma(self, t):
        return math_of(t).cos(math.pi / 2 * t)

    def d_alpha(self, t):
        return math.pi / 2 * math_of(t).cos(math.pi / 2 * t)

    def d_sigma(self, t):
        return -math.pi / 2 * math_of(t).sin(math.pi / 2 * t)


def path_names() -> list[str]:
    """The names of the registered probability paths (``genzoo.paths`` entry points, plugins' included), sorted."""
    from .. import registry

    return registry.names("path")


def get_path(name: str) -> ProbabilityPath:
    """The registered probability path ``name``, built.

    Args:
        name: a registered path name, e.g. ``"straight"`` or ``"cosine"``.

    Returns:
        The path object.

    Raises:
        ValueError: naming ``name`` and the registered paths, if it is not one of them.
    """
    from .. import registry
    from ..checks import describe

    names = path_names()
    if not isinstance(name, str) or name not in names:
        raise ValueError(
            f"Unknown path={describe(name)}; allowed: {', '.join(map(repr, names))} (the registered probability "
            "paths; a package adds one under the 'genzoo.paths' entry-point group)."
        )
    path = registry.get("path", name)
    path = path() if isinstance(path, type) else path
    if not isinstance(path, ProbabilityPath):
        raise ValueError(f"The registered path {name!r} is a {type(path).__name__}, not a genzoo ProbabilityPath.")
    return path

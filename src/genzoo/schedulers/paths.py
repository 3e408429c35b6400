"""The Gaussian probability path shared by every genzoo scheduler.

Both diffusion-type methods in genzoo noise data along one *affine* path::

    x_t = alpha_t * data + sigma_t * noise,        noise ~ N(0, I)

- DDPM walks it on a discrete grid with ``alpha = sqrt(alpha_bar_t)`` and
  ``sigma = sqrt(1 - alpha_bar_t)``;
- flow matching walks it in continuous time ``t in [0, 1]`` with ``alpha = t`` and
  ``sigma = 1 - t`` (noise at ``t = 0``, data at ``t = 1``), so ``d_alpha = 1`` and
  ``d_sigma = -1``.

Everything a scheduler needs from a model output -- the data estimate, the noise estimate,
the velocity ``dx_t/dt`` -- follows from ``alpha``, ``sigma`` and, for velocities, their
time derivatives. This module holds those conversions once, so the two schedulers do not
each carry their own copy.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..checks import check_choice  # noqa: F401  (re-exported for the schedulers)

#: What a model may be trained to predict, with Diffusers' names where Diffusers has one.
#: ``velocity`` is the flow-matching target ``dx_t/dt = d_alpha * data + d_sigma * noise``;
#: ``v_prediction`` is the (different) diffusion "v" of Salimans & Ho, ``alpha * noise - sigma * data``.
PREDICTION_TYPES = ("epsilon", "sample", "v_prediction", "velocity")


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


def check_same_shape(model_output: torch.Tensor, sample: torch.Tensor, allowed_channels=None) -> None:
    """``step`` inputs must agree in shape (``allowed_channels`` lists extra widths of dim 1 to accept)."""
    if model_output.shape == sample.shape:
        return
    if (
        allowed_channels
        and model_output.ndim == sample.ndim
        and model_output.shape[0] == sample.shape[0]
        and model_output.shape[2:] == sample.shape[2:]
        and model_output.shape[1] in allowed_channels
    ):
        return
    raise ValueError(
        f"model_output has shape {tuple(model_output.shape)} but sample has shape {tuple(sample.shape)}; "
        "they must match" + (f" (or have {allowed_channels} channels in dim 1)" if allowed_channels else "") + "."
    )

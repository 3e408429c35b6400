"""Exact log-likelihood of data points under a flow-matching model, by the instantaneous change of variables.

A flow-matching model defines a density through its ODE: draw ``x(0) ~ N(0, I)`` and integrate
``dx/dt = v(x, t)`` from ``t = 0`` (noise) to ``t = 1`` (data). Along a trajectory the log-density obeys
``d log p_t(x(t)) / dt = -div v(x(t), t)`` (Chen et al. 2018, "Neural ODEs", theorem 1), hence

    log p_1(x(1)) = log N(x(0); 0, I) - int_0^1 div v(x(t), t) dt.

:func:`flow_log_likelihood` integrates the state and the divergence integral *backward* from the data point at
``t = 1`` to ``t = 0`` with a fixed-step solver and returns that number per point.
"""

from __future__ import annotations

import math

import torch

from ..checks import check_positive_int

__all__ = ["flow_log_likelihood"]

METHODS = ("rk4", "euler")


def _time_scale(scheduler) -> float:
    """Model time input per unit of flow time (``scheduler.time_scale`` for genzoo's flow schedulers)."""
    scale = getattr(scheduler, "time_scale", None)
    if scale is not None:
        return float(scale)
    config = getattr(scheduler, "config", None)
    if config is not None and "scale_timesteps" in config and "num_train_timesteps" in config:
        return float(config["num_train_timesteps"]) if config["scale_timesteps"] else 1.0
    raise ValueError(
        f"flow_log_likelihood needs a flow-matching scheduler with `time_scale` (e.g. genzoo.FlowMatchEulerScheduler), "
        f"got {type(scheduler).__name__}."
    )


def _model_dtype(model, fallback: torch.dtype) -> torch.dtype:
    for p in model.parameters() if hasattr(model, "parameters") else ():
        if p.is_floating_point():
            return p.dtype
    return fallback


def _model_device(model, fallback: torch.device) -> torch.device:
    for p in model.parameters() if hasattr(model, "parameters") else ():
        return p.device
    return fallback


def flow_log_likelihood(
    unet,
    scheduler,
    x: torch.Tensor,
    num_steps: int = 100,
    method: str = "rk4",
    class_labels: torch.Tensor | None = None,
    return_noise: bool = False,
):
    """Exact log-density ``log p_1(x)``, in nats per point, of ``x`` under the flow of the velocity model ``unet``.

    Definition: ``p_1`` is the law of ``x(1)`` when ``x(0) ~ N(0, I)`` and ``dx/dt = v(x, t)``, with ``v`` the model's
    velocity (genzoo's convention: ``t = 0`` noise, ``t = 1`` data, ``v ~ x_1 - x_0``). By the instantaneous change
    of variables (Chen et al. 2018)

        log p_1(x) = log N(x(0); 0, I) - int_0^1 div_x v(x(t), t) dt,   x(1) = x,

    where ``x(t)`` is the ODE trajectory through ``x``. The ODE and the divergence integral are solved together,
    *backward* from ``t = 1`` to ``t = 0``, with ``num_steps`` fixed steps of classical RK4 (``method="rk4"``, four
    model calls per step) or Euler (``"euler"``, one) on the uniform grid ``t_k = 1 - k / num_steps``.
    The scheduler's ``shift`` is ignored: the density depends on the velocity field, not on a sampling grid.

    The divergence is exact: ``sum_i d v_i / d x_i`` by autograd, one backward pass per data dimension (fine for
    D up to ~16; 2-D toy data costs 2). Per-point results assume the model treats batch elements independently
    (no batch statistics: call it in eval mode). The model is fed ``(x, t * scheduler.time_scale)`` -- the units of
    ``scheduler.timesteps`` -- with ``t`` a ``(B,)`` tensor in the model's dtype.

    Precision: the ODE state, the divergence integral and the Gaussian term are float64; the model runs in its own
    dtype (inputs and the time cast to it, outputs cast back; a parameter-free module runs in ``x``'s dtype). A
    float32 model changed the result by ~1e-7 nats against a float64 copy (2-D ``MLPDenoiser``, random init), far
    below the discretisation error, so there is no need to cast the model. Discretisation error (max over points),
    measured on the exact Gaussian flow (data N(mu, s^2 I), noise N(0, I); d = 1, 2, 3; s = 2, 0.5, 0.3): RK4
    ~3e-3 nats at 5 steps, ~1e-4 at 10, ~5e-6 at 20, ~1e-7 at 50, ~1e-8 at 100 (order 4); Euler ~0.3-0.5 nats at
    100 steps, halving as the steps double (order 1) -- use RK4. A learned field is rougher in ``t`` (the sinusoidal
    time embedding has frequencies up to ~1000 per unit flow time): on a randomly initialised 2-D ``MLPDenoiser``
    RK4 gave ~2e-3 nats at 10-50 steps, ~1e-4 at 100, ~1e-5 at 200, ~5e-8 at 500 (against 2000 steps), so check
    convergence in ``num_steps`` on your model. Cost: ``4 * num_steps`` forward and ``4 * num_steps * D`` backward
    passes; 500 points, 100 steps, 2-D ``MLPDenoiser`` (width 128, 3 blocks): ~2 s on one CPU thread.

    Caveats: this is a *density* for continuous data: it depends on the data's scale (rescaling the data by ``c``
    shifts it by ``-D log c``) and may be positive; it is only comparable between models on identically
    preprocessed data. Only ``prediction_type="velocity"`` is supported: a sample (``x_1``) prediction implies the
    velocity ``(x_1_hat - x) / (1 - t)``, singular at ``t = 1`` where the backward integration starts.

    Args:
        unet (torch.nn.Module): velocity model called as ``unet(x, timestep).sample`` (e.g. ``genzoo.MLPDenoiser``).
        scheduler (FlowMatchEulerScheduler): a genzoo flow-matching scheduler (for ``time_scale`` and
            ``prediction_type``).
        x: data points, shape ``(B, *sample_shape)``.
        num_steps: number of solver steps from ``t = 1`` to ``t = 0``.
        method: ``"rk4"`` (default) or ``"euler"``.
        class_labels: optional ``(B,)`` labels passed to a class-conditional model.
        return_noise: also return ``x(0)``, the point's image in noise space.

    Returns:
        (torch.Tensor | tuple[torch.Tensor, torch.Tensor]): ``(B,)`` float64 tensor of ``log p_1(x)`` in nats on
        ``x``'s device (and ``x(0)`` in float64 if ``return_noise``). No autograd graph is kept and no parameter
        gradients are touched.
    """
    if method not in METHODS:
        raise ValueError(f"Unknown method={method!r}; allowed: {', '.join(repr(m) for m in METHODS)}.")
    check_positive_int("num_steps", num_steps)
    scale = _time_scale(scheduler)
    config = getattr(scheduler, "config", None)
    prediction_type = config.get("prediction_type", "velocity") if config is not None else "velocity"
    if prediction_type != "velocity":
        raise ValueError(
            f"flow_log_likelihood supports prediction_type='velocity' only, got {prediction_type!r}: a sample "
            "prediction's velocity (x1_hat - x) / (1 - t) is singular at t = 1, where the likelihood ODE starts."
        )
    x = torch.as_tensor(x)
    if x.ndim < 2 or x.shape[0] == 0:
        raise ValueError(f"x must be a non-empty batch of shape (B, *sample_shape), got {tuple(x.shape)}.")
    out_device = x.device
    device = _model_device(unet, x.device)
    mdtype = _model_dtype(unet, x.dtype if x.is_floating_point() else torch.float32)
    batch, dim = x.shape[0], x[0].numel()
    if class_labels is not None:
        class_labels = torch.as_tensor(class_labels, device=device)

    def field(state: torch.Tensor, t: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Velocity and exact divergence at float64 ``state`` ``(B, *shape)``, flow time ``t``; both float64."""
        with torch.enable_grad():
            inp = state.detach().requires_grad_(True)
            timestep = torch.full((batch,), t * scale, dtype=mdtype, device=device)
            kwargs = {} if class_labels is None else {"class_labels": class_labels}
            v = unet(inp.to(mdtype), timestep, **kwargs).sample
            if v.shape != inp.shape:
                raise ValueError(f"The model's output {tuple(v.shape)} must match its input {tuple(inp.shape)}.")
            v_flat = v.reshape(batch, dim)
            div = torch.zeros(batch, dtype=torch.float64, device=device)
            for i in range(dim):
                (grad,) = torch.autograd.grad(v_flat[:, i].sum(), inp, retain_graph=i < dim - 1)
                div = div + grad.reshape(batch, dim)[:, i].double()
        return v.detach().double(), div

    state = x.detach().to(device=device, dtype=torch.float64)
    integral = torch.zeros(batch, dtype=torch.float64, device=device)  # int_1^t div v ds, i.e. -int_t^1
    h = -1.0 / num_steps
    for k in range(num_steps):
        t = 1.0 - k / num_steps
        if method == "euler":
            v, div = field(state, t)
            state, integral = state + h * v, integral + h * div
            continue
        v1, d1 = field(state, t)
        v2, d2 = field(state + 0.5 * h * v1, t + 0.5 * h)
        v3, d3 = field(state + 0.5 * h * v2, t + 0.5 * h)
        v4, d4 = field(state + h * v3, max(t + h, 0.0))
        state = state + (h / 6.0) * (v1 + 2 * v2 + 2 * v3 + v4)
        integral = integral + (h / 6.0) * (d1 + 2 * d2 + 2 * d3 + d4)
    # integral = int_1^0 div dt = -int_0^1 div dt
    log_noise = -0.5 * state.reshape(batch, dim).pow(2).sum(dim=1) - 0.5 * dim * math.log(2 * math.pi)
    log_p = (log_noise + integral).to(out_device)
    if return_noise:
        return log_p, state.to(out_device)
    return log_p

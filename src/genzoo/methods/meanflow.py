"""MeanFlow (Geng et al. 2025, "Mean flows for one-step generative modeling"): a one-step model trained from scratch.

Flow matching learns the instantaneous velocity ``v(x_t, t)`` of the straight path ``x_t = (1 - t) x_0 + t x_1``
(noise ``x_0`` at ``t = 0``, data ``x_1`` at ``t = 1``) and needs many small steps to integrate it. MeanFlow learns
the *average* velocity over an interval ``[t, r]``,

    u(x_t, t, r) = 1 / (r - t) * integral_t^r v(x_s, s) ds,     so that     x_r = x_t + (r - t) u(x_t, t, r),

and one call with ``t = 0, r = 1`` draws a sample. Differentiating ``(r - t) u = integral_t^r v ds`` in ``t``
gives the *MeanFlow identity*

    u(x_t, t, r) = v(x_t, t) + (r - t) * d/dt u(x_t, t, r),     d/dt u = v . grad_x u + partial_t u,

whose right-hand side needs no integral: the total derivative is one Jacobian-vector product of the network with
tangent ``(v, 1, 0)`` (``torch.func.jvp``, computed in the same forward pass). The loss regresses ``u`` on that
target with the derivative's gradient stopped, the conditional velocity ``x_1 - x_0`` standing in for ``v`` as in
flow matching:

    L = w * || u_theta(x_t, t, r) - sg(x_1 - x_0 + (r - t) * d/dt u_theta) ||^2,    w = sg(1 / (||.||^2 + c)^p).

``t`` and ``r`` are two draws of the scheduler's training-time distribution, ordered; a fraction ``--flow_ratio``
of the examples get ``r = t``, where the target is plain flow matching (the paper's best: 75 %). The adaptive weight
with power ``--adaptive_p`` (``c = 1e-3``) tempers the heavy tail of the squared error (the paper's p = 1).

The network embeds ``t`` and the interval ``r - t`` (``class_embed_type="timestep"``): a ``UNet2DModel`` on images
(without self-attention: the forward-mode derivative of PyTorch's fused attention is not implemented on CPU), an
:class:`~genzoo.models.MLPDenoiser` on vectors. The saved pipeline is a :class:`~genzoo.FlowMapPipeline` with a
:class:`~genzoo.FlowMapEulerScheduler`: one step by default, any number of steps allowed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from ..config import option
from ..pipelines import FlowMapPipeline
from .adversarial import DISCRIMINATOR, AdversarialConfig, AdversarialLoss
from .base import randn_like
from .flow_matching import FlowMatchingMethod, FlowPathConfig, path_scheduler_kwargs

MEANFLOW = "meanflow"
#: ``c`` of the adaptive loss weight ``1 / (||error||^2 + c)^p`` (the paper's value).
ADAPTIVE_EPS = 1e-3


@dataclass
class MeanFlowConfig(FlowPathConfig, AdversarialConfig):
    group_title: ClassVar[str] = "meanflow"

    flow_ratio: float = option(0.75, "fraction of examples trained with r = t (the instantaneous velocity, plain flow "
                               "matching); the rest learn average velocities over r > t", minimum=0.0, maximum=1.0,
                               group=MEANFLOW)
    adaptive_p: float = option(1.0, "power p of the adaptive loss weight 1 / (error^2 + 1e-3)^p (0: plain squared "
                               "error)", minimum=0.0, group=MEANFLOW)


class MeanFlowMethod(AdversarialLoss, FlowMatchingMethod):
    """MeanFlow (Geng et al. 2025): an average-velocity model ``u(x_t, t, r)`` trained through the MeanFlow identity
    (``--method meanflow``); samples in one step. With ``--gan_weight`` > 0 a discriminator scores its one-step
    samples against the data and the generator loss joins the MeanFlow loss
    (:mod:`genzoo.methods.adversarial`).

    Saves a ``FlowMapPipeline`` with a ``FlowMapEulerScheduler``; see the few-step guide for the identity.

    Args:
        config (MeanFlowConfig): the method's options (``--method meanflow``; see the trainer options).
        data (genzoo.data.TrainingData): the training data.
        context (RunContext | None): what the method may know about the run.
    """

    name = "meanflow"
    Config = MeanFlowConfig
    conditionings = ("none",)
    default_scheduler = "FlowMapEulerScheduler"
    pipeline_class = FlowMapPipeline

    def scheduler_name(self) -> str:
        return self.default_scheduler

    def scheduler_kwargs(self):
        return {**path_scheduler_kwargs(self.config), "scale_timesteps": False}

    def check_data(self) -> None:
        super().check_data()
        if self.data.kind == "image" and self.config.attention:
            raise ValueError(
                "--attention true cannot train with --method meanflow: its loss takes a forward-mode derivative "
                "(torch.func.jvp) of the UNet, which PyTorch's fused attention does not implement on CPU; use "
                "--attention false."
            )

    def model_options(self) -> dict:
        # t and the interval r - t, both embedded as times; no mid-block attention (see check_data).
        extra = {"add_attention": False} if self.data.kind == "image" else {}
        return {"class_embed_type": "timestep", **extra}

    def generated(self, models, batch, generator):
        """One-step samples ``x_1 = x_0 + u(x_0, 0, 1)``, as the saved pipeline draws them (with gradients)."""
        noise = randn_like(batch["sample"], generator)
        scale, zeros = self.training_scheduler.time_scale, noise.new_zeros(noise.shape[0])
        return noise + models["unet"](noise, zeros, class_labels=(zeros + 1) * scale).sample

    def loss(self, phase, models, batch, step, generator):
        if phase == DISCRIMINATOR:
            return self.critic_step(models, batch, generator)
        scheduler, unet = self.training_scheduler, models["unet"]
        x1, x0, _ = self.training_pair(models, batch, generator)  # unconditional: no conditioning arguments
        n, scale = x1.shape[0], scheduler.time_scale
        a = scheduler.sample_timesteps(n, generator=generator, device=x1.device) / scale
        b = scheduler.sample_timesteps(n, generator=generator, device=x1.device) / scale
        same = torch.rand(n, generator=generator, device=generator.device).to(x1.device) < self.config.flow_ratio
        t = torch.minimum(a, b)
        r = torch.where(same, t, torch.maximum(a, b))
        shape = (n,) + (1,) * (x1.ndim - 1)
        xt = scheduler.add_noise(x1, x0, t * scale)
        v = x1 - x0

        def average_velocity(x, start, end):
            return unet(x, start * scale, class_labels=(end - start) * scale).sample

        # Where r = t the target is v itself: only the other rows pay for the Jacobian-vector product (with the
        # default flow_ratio a quarter of the batch). The UNet and the MLP normalise per example, so splitting the
        # batch changes no row's output.
        error = torch.empty(n, device=x1.device, dtype=torch.float32)
        plain, jumps = same.nonzero().squeeze(1), (~same).nonzero().squeeze(1)
        if len(plain):
            u = average_velocity(xt[plain], t[plain], r[plain])
            error[plain] = (u.float() - v[plain].float()).pow(2).flatten(1).mean(dim=1)
        if len(jumps):
            tangents = (v[jumps], torch.ones_like(t[jumps]), torch.zeros_like(r[jumps]))
            u, du_dt = torch.func.jvp(average_velocity, (xt[jumps], t[jumps], r[jumps]), tangents)
            target = (v[jumps] + (r - t)[jumps].view((-1,) + shape[1:]).to(v.dtype) * du_dt).detach()
            error[jumps] = (u.float() - target.float()).pow(2).flatten(1).mean(dim=1)
        weight = (error.detach() + ADAPTIVE_EPS).pow(-self.config.adaptive_p)
        loss = (weight * error).mean()
        return self.with_gan_term(models, batch, generator, loss, {"loss": loss, "mse": error.mean().detach()})

    def describe(self):
        return {**super().describe(), "flow_ratio": self.config.flow_ratio, "adaptive_p": self.config.adaptive_p}

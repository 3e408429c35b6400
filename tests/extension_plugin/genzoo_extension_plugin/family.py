"""A new pipeline family: a mixture of diagonal Gaussians, trained by maximum likelihood, sampled in one pass."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config

from genzoo.config import option
from genzoo.methods import Method, MethodConfig
from genzoo.pipelines import GenzooPipeline, VectorPipelineOutput
from genzoo.pipelines.base import VECTOR_OUTPUT_TYPES, sampling_mode


class GaussianMixture(ModelMixin, ConfigMixin):
    """``num_components`` diagonal Gaussians in ``sample_size`` dimensions with learned weights."""

    data_kind = "vector"

    @register_to_config
    def __init__(self, sample_size: int = 2, num_components: int = 8):
        super().__init__()
        self.means = torch.nn.Parameter(torch.randn(num_components, sample_size, generator=torch.Generator().manual_seed(0)))
        self.log_scales = torch.nn.Parameter(torch.zeros(num_components, sample_size))
        self.logits = torch.nn.Parameter(torch.zeros(num_components))

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x) of each row of ``x``, in nats."""
        z = (x[:, None, :] - self.means) / self.log_scales.exp()
        per_component = -0.5 * (z**2 + math.log(2 * math.pi)).sum(-1) - self.log_scales.sum(-1)
        return torch.logsumexp(per_component + self.logits.log_softmax(-1), dim=-1)

    def sample(self, noise: torch.Tensor, choice: torch.Tensor) -> torch.Tensor:
        """Samples from standard normal ``noise`` and component indices ``choice``."""
        return self.means[choice] + self.log_scales.exp()[choice] * noise


class MixturePipeline(GenzooPipeline):
    """Samples from a ``GaussianMixture``: pick a component by its weight, then draw from it. One pass, no steps."""

    model_kind = "mixture"
    main_component = "mixture"
    model_cpu_offload_seq = "mixture"
    output_types = VECTOR_OUTPUT_TYPES

    def __init__(self, mixture):
        super().__init__()
        self.register_modules(mixture=mixture)

    @property
    def latent_shape(self) -> tuple[int, ...]:
        """The per-sample shape of the standard normal noise a sample is drawn from."""
        return (self.mixture.config.sample_size,)

    def exact_log_likelihood(self, x: torch.Tensor, num_steps: int | None = None) -> torch.Tensor:
        """Exact log-likelihood of each row of ``x`` in nats (``num_steps`` is ignored: no ODE to integrate).
        Declaring it is what makes ``genzoo eval`` report ``nll_nats`` for this family."""
        with torch.no_grad():
            return self.mixture.log_prob(x.to(self.device, self.dtype)).float()

    @sampling_mode
    def __call__(self, batch_size: int = 1, generator: torch.Generator | None = None,
                 num_inference_steps: int | None = None, latents: torch.Tensor | None = None,
                 output_type: str = "np", return_dict: bool = True, *, class_labels=None,
                 guidance_scale: float | None = None):
        """Draw ``batch_size`` samples (``num_inference_steps`` is ignored: one pass)."""
        self._check_arguments(batch_size, num_inference_steps, guidance_scale, output_type, latents, generator)
        self._check_no_guidance(guidance_scale)
        if class_labels is not None:
            raise ValueError("MixturePipeline is unconditional; leave class_labels as None.")
        noise = self._noise(self.latent_shape, generator, latents, batch_size)
        weights = self.mixture.logits.detach().float().softmax(-1).cpu()
        generators = generator if isinstance(generator, list) else [generator] * batch_size
        choice = torch.cat([torch.multinomial(weights, 1, generator=g) for g in generators])  # one draw per sample
        return self._output(self.mixture.sample(noise, choice.to(self.device)), output_type, return_dict)


@dataclass
class MixtureConfig(MethodConfig):
    group_title: ClassVar[str] = "gaussian-mixture"

    num_components: int = option(8, "mixture components", minimum=1)


class MixtureMethod(Method):
    """Maximum likelihood: minimise -log p(x) of the data under the mixture."""

    name = "gaussian-mixture"
    Config = MixtureConfig
    model_names = ("mixture",)
    data_kinds = ("vector",)
    trainer_defaults = {"learning_rate": 3e-2, "use_ema": False}
    smoke_test_options = {"num_components": 4}
    scale_up = "more `--num_components`."

    def build_models(self):
        return {"mixture": GaussianMixture(sample_size=self.data.sample_shape[0],
                                           num_components=self.config.num_components)}

    def loss(self, phase, models, batch, step, generator):
        nll = -models["mixture"].log_prob(batch["sample"].float()).mean()
        return nll, {"nll": nll}

    def make_pipeline(self, models):
        return MixturePipeline(mixture=models["mixture"])


__all__ = ["GaussianMixture", "MixtureMethod", "MixturePipeline", "VectorPipelineOutput"]

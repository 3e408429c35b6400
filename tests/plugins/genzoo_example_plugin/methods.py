"""A third-party training method, trained by genzoo's own trainer: a generative moment-matching network
(Li, Swersky & Zemel 2015). A generator maps z ~ N(0, I) to samples and is trained to minimise the RBF-kernel MMD
between a batch of its samples and a batch of data; no discriminator. It packages into genzoo's GANPipeline.

It shows every hook of the method API:
- typed options (``MomentMatchingConfig``), from which genzoo makes ``--mm_latent_dim`` etc., checks recipes and
  writes ``--help``;
- state of its own that checkpoints carry (``state_dict``): the kernel bandwidths follow a running average of the
  data's median pairwise distance, so resuming is exact only if that average is restored;
- a frozen teacher (``--teacher PATH_OR_REPO_ID``): with one, the generator matches the teacher pipeline's samples
  instead of the data -- a one-step distillation of any genzoo pipeline of vector data.

Two options exist for the trainer's tests: ``--record_batches`` writes, per process and step, the data indices it
saw and a checksum of its weights (``record-rank<R>.jsonl`` in the output folder); ``--nan_at_step N`` makes the
loss NaN at step N.
"""

import json
from dataclasses import dataclass
from typing import ClassVar

import torch

from genzoo import GANPipeline, MLPGenerator
from genzoo.config import option
from genzoo.methods import Method, MethodConfig, randn_like, teacher_option

BANDWIDTHS = (0.2, 0.5, 1.0, 2.0)  # in units of the data's median pairwise distance


def rbf_mmd2(x: torch.Tensor, y: torch.Tensor, bandwidths=BANDWIDTHS) -> torch.Tensor:
    """Biased estimate of MMD^2 between samples ``x`` and ``y`` with a sum of RBF kernels."""
    xy = torch.cat([x, y])
    d2 = torch.cdist(xy, xy).pow(2)
    k = sum(torch.exp(-d2 / (2 * h * h)) for h in bandwidths)
    n = x.shape[0]
    return k[:n, :n].mean() + k[n:, n:].mean() - 2 * k[:n, n:].mean()


@dataclass
class MomentMatchingConfig(MethodConfig):
    group_title: ClassVar[str] = "moment-matching"

    mm_latent_dim: int = option(4, "size of z", minimum=1)
    mm_hidden_dim: int = option(32, "generator MLP width", minimum=1)
    scale_momentum: float = option(0.9, "running average of the median pairwise distance", minimum=0.0, below=1.0)
    teacher: str | None = teacher_option("match this pipeline's samples instead of the data (a distillation)")
    teacher_steps: int | None = option(None, "sampling steps of the teacher (default: its pipeline's)", minimum=1)
    record_batches: bool = option(False, "tests: record data indices and weight checksums per step")
    nan_at_step: int | None = option(None, "tests: make the loss NaN at this step", minimum=1)


class MomentMatchingMethod(Method):
    name = "moment-matching"
    Config = MomentMatchingConfig
    model_names = ("generator",)
    data_kinds = ("vector",)
    trainer_defaults = {"learning_rate": 1e-3, "use_ema": False}
    smoke_test_options = {"mm_hidden_dim": 16}
    scale_up = "`--mm_hidden_dim 128` and batches of 512 or more (MMD estimates improve with the batch)."

    def __init__(self, config, data, context=None):
        super().__init__(config, data, context)
        self.scale = torch.tensor(float("nan"))  # running median pairwise distance; NaN until the first batch

    def build_models(self):
        return {
            "generator": MLPGenerator(
                sample_size=self.data.sample_shape[0],
                latent_dim=self.config.mm_latent_dim,
                hidden_dim=self.config.mm_hidden_dim,
                num_layers=2,
            )
        }

    def target(self, batch, generator) -> torch.Tensor:
        """What the generator matches: the data batch, or as many samples of the teacher."""
        data = batch["sample"]
        if self.teacher is None:
            return data
        out = self.teacher(batch_size=data.shape[0], generator=generator, num_inference_steps=self.config.teacher_steps,
                           output_type="pt")
        return out.samples.to(data)

    def loss(self, phase, models, batch, step, generator):
        target = self.target(batch, generator).float()
        median = torch.cdist(target, target).median().detach().cpu()
        m = self.config.scale_momentum
        self.scale = median if torch.isnan(self.scale) else m * self.scale + (1 - m) * median
        z = randn_like(target.new_empty(target.shape[0], self.config.mm_latent_dim), generator)
        fake = models["generator"](z).sample
        loss = rbf_mmd2(fake.float(), target, [h * float(self.scale) for h in BANDWIDTHS])
        if self.config.nan_at_step is not None and step + 1 == self.config.nan_at_step:
            loss = loss * float("nan")
        if self.config.record_batches:
            checksum = float(sum(p.detach().double().sum() for p in models["generator"].parameters()))
            path = self.context.output_dir / f"record-rank{self.context.process_index}.jsonl"
            with open(path, "a") as f:
                f.write(json.dumps({"step": step, "indices": batch["index"].tolist(), "checksum": checksum}) + "\n")
        return loss, {"mmd2": loss, "scale": self.scale}

    def state_dict(self):
        return {"scale": self.scale}

    def load_state_dict(self, state):
        self.scale = state["scale"]

    def make_pipeline(self, models):
        return GANPipeline(generator=models["generator"])

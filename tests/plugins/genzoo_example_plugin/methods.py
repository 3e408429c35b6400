"""A third-party training method, trained by genzoo's own trainer: a generative moment-matching network
(Li, Swersky & Zemel 2015). A generator maps z ~ N(0, I) to samples and is trained to minimise the RBF-kernel MMD
between a batch of its samples and a batch of data; no discriminator. It packages into genzoo's GANPipeline.

Two options exist for the trainer's tests: ``--record_batches`` writes, per process and step, the data indices it
saw and a checksum of its weights (``record-rank<R>.jsonl`` in the output folder); ``--nan_at_step N`` makes the
loss NaN at step N.
"""

import json
import os

import torch

from genzoo import GANPipeline, MLPGenerator
from genzoo.methods import Method, randn_like


def rbf_mmd2(x: torch.Tensor, y: torch.Tensor, bandwidths=(0.2, 0.5, 1.0, 2.0)) -> torch.Tensor:
    """Biased estimate of MMD^2 between samples ``x`` and ``y`` with a sum of RBF kernels."""
    xy = torch.cat([x, y])
    d2 = torch.cdist(xy, xy).pow(2)
    k = sum(torch.exp(-d2 / (2 * h * h)) for h in bandwidths)
    n = x.shape[0]
    return k[:n, :n].mean() + k[n:, n:].mean() - 2 * k[:n, n:].mean()


class MomentMatchingMethod(Method):
    name = "moment-matching"
    model_names = ("generator",)
    trainer_defaults = {"learning_rate": 1e-3, "use_ema": False}

    @classmethod
    def add_arguments(cls, parser):
        group = parser.add_argument_group("moment-matching")
        group.add_argument("--mm_latent_dim", type=int, default=4)
        group.add_argument("--mm_hidden_dim", type=int, default=32)
        group.add_argument("--record_batches", action="store_true")
        group.add_argument("--nan_at_step", type=int, default=None)

    def check_data(self):
        if self.data.kind != "vector":
            raise ValueError("moment-matching trains on vector data (e.g. --dataset moons).")

    def build_models(self):
        return {
            "generator": MLPGenerator(
                sample_size=self.data.sample_shape[0],
                latent_dim=self.args.mm_latent_dim,
                hidden_dim=self.args.mm_hidden_dim,
                num_layers=2,
            )
        }

    def loss(self, phase, models, batch, step, generator):
        data = batch["sample"]
        fake = models["generator"](randn_like(data.new_empty(data.shape[0], self.args.mm_latent_dim), generator)).sample
        loss = rbf_mmd2(fake.float(), data.float())
        if self.args.nan_at_step is not None and step + 1 == self.args.nan_at_step:
            loss = loss * float("nan")
        if self.args.record_batches:
            rank = int(os.environ.get("RANK", "0"))
            checksum = float(sum(p.detach().double().sum() for p in models["generator"].parameters()))
            with open(os.path.join(self.args.output_dir, f"record-rank{rank}.jsonl"), "a") as f:
                f.write(json.dumps({"step": step, "indices": batch["index"].tolist(), "checksum": checksum}) + "\n")
        return loss, {"mmd2": loss}

    def make_pipeline(self, models):
        return GANPipeline(generator=models["generator"])

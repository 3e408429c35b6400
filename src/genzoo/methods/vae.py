"""VAE (Kingma & Welling 2013): maximise the ELBO, i.e. minimise reconstruction + beta * KL(q(z|x) || N(0, I)).

The encoder's Gaussian is sampled with the reparameterisation trick, z = mu + sigma * eps, with eps drawn from the
trainer's generator (``latent_dist.sample(generator)``), so gradients reach mu and sigma and resuming is exact.

With ``--conditioning class`` it is a conditional VAE (Sohn et al. 2015): the label goes into the encoder and the
decoder (:class:`~genzoo.models.ConditionalAutoencoderKL` for images, :class:`~genzoo.models.MLPVAE` with
``num_class_embeds`` for vectors), and sampling a class decodes the prior with its label.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL

from ..conditioning import set_id2label
from ..models import MLPVAE, ConditionalAutoencoderKL
from ..pipelines import VAEPipeline
from .base import Method
from .denoising import int_list

RECON_LOSSES = ("mse", "bce")


class VAEMethod(Method):
    name = "vae"
    model_names = ("vae",)
    conditionings = ("none", "class")
    trainer_defaults = {"learning_rate": 1e-3, "use_ema": False}

    @classmethod
    def add_arguments(cls, parser):
        g = parser.add_argument_group("vae")
        g.add_argument("--recon_loss", choices=RECON_LOSSES, default="mse",
                       help="mse: sum of squared errors (Gaussian decoder); bce: Bernoulli on pixels mapped to [0, 1]")
        g.add_argument("--beta", type=float, default=1.0, help="weight of the KL term (beta-VAE; default 1)")
        g.add_argument("--kl_warmup_steps", type=int, default=0, help="ramp beta up linearly over this many steps")
        g.add_argument("--latent_channels", type=int, default=4, help="images: AutoencoderKL latent channels")
        g.add_argument("--vae_block_out_channels", type=int_list, default=[32, 64],
                       help="images: AutoencoderKL widths per level (default 32,64)")
        g.add_argument("--vae_layers_per_block", type=int, default=1)
        g.add_argument("--latent_dim", type=int, default=2, help="vectors: size of z (default 2)")
        g.add_argument("--vae_hidden_dim", type=int, default=128, help="vectors: MLP width")
        g.add_argument("--vae_num_layers", type=int, default=2, help="vectors: MLP hidden layers")

    def check_data(self):
        if self.args.recon_loss == "bce" and self.data.kind != "image":
            raise ValueError("--recon_loss bce needs image data in [-1, 1]; use mse for vector data.")
        if self.data.kind == "image":
            factor = 2 ** (len(self.args.vae_block_out_channels) - 1)
            if self.data.sample_shape[1] % factor or self.data.sample_shape[2] % factor:
                raise ValueError(
                    f"An AutoencoderKL with {len(self.args.vae_block_out_channels)} levels needs a resolution divisible "
                    f"by {factor}; got {self.data.sample_shape[1]}x{self.data.sample_shape[2]}."
                )

    def build_models(self):
        a, shape = self.args, self.data.sample_shape
        classes = dict(num_class_embeds=len(self.id2label)) if self.id2label else {}
        if self.data.kind == "image":
            levels = len(a.vae_block_out_channels)
            vae_class = ConditionalAutoencoderKL if self.id2label else AutoencoderKL
            vae = vae_class(
                in_channels=shape[0],
                out_channels=shape[0],
                sample_size=shape[1],
                latent_channels=a.latent_channels,
                block_out_channels=tuple(a.vae_block_out_channels),
                layers_per_block=a.vae_layers_per_block,
                down_block_types=("DownEncoderBlock2D",) * levels,
                up_block_types=("UpDecoderBlock2D",) * levels,
                norm_num_groups=min(8, min(a.vae_block_out_channels)),
                **classes,
            )
        else:
            vae = MLPVAE(sample_size=shape[0], latent_dim=a.latent_dim, hidden_dim=a.vae_hidden_dim,
                         num_layers=a.vae_num_layers, **classes)
        if self.id2label:
            set_id2label(vae, self.id2label)
        return {"vae": vae}

    def ema_models(self):
        return ["vae"]

    def beta_at(self, step: int) -> float:
        if self.args.kl_warmup_steps > 0:
            return self.args.beta * min(1.0, (step + 1) / self.args.kl_warmup_steps)
        return self.args.beta

    def loss(self, phase, models, batch, step, generator):
        vae = models["vae"]
        x = batch["sample"]
        # a conditional VAE sees the label in the encoder and the decoder; AutoencoderKL takes no class_labels
        labels = {"class_labels": batch["label"].to(x.device)} if self.conditioning == "class" else {}
        posterior = vae.encode(x, **labels).latent_dist
        z = posterior.sample(generator=generator)  # z = mu + sigma * eps: the reparameterisation trick
        x_hat = vae.decode(z, **labels).sample.float()
        if self.args.recon_loss == "mse":
            recon = (x_hat - x.float()).pow(2).flatten(1).sum(dim=1)
        else:
            probs = ((x_hat + 1) / 2).clamp(1e-6, 1 - 1e-6)
            recon = F.binary_cross_entropy(probs, ((x.float() + 1) / 2), reduction="none").flatten(1).sum(dim=1)
        kl = posterior.kl().float()
        beta = self.beta_at(step)
        loss = (recon + beta * kl).mean()
        return loss, {"loss": loss, "recon": recon.mean(), "kl": kl.mean(), "beta": torch.tensor(beta)}

    def make_pipeline(self, models):
        return VAEPipeline(vae=models["vae"])

    def describe(self):
        return {"conditioning": self.conditioning}

"""Distribution matching distillation (Yin et al. 2024, DMD; DMD2, Yin et al. 2024): a one-step (or few-step)
student whose *distribution* matches a frozen teacher's, sharpened by a GAN loss on real data.

The student ``G`` maps noise ``z`` to a sample ``x = G(z)`` in one call. Its samples are noised along the teacher's
own path, ``x_t = alpha_t x + sigma_t eps``, at a time ``t`` from the teacher scheduler's training distribution, and
two denoisers give a data estimate there:

* the frozen **teacher** (the "real" denoiser; for a conditional teacher with classifier-free guidance at
  ``--teacher_guidance``, so the student learns the guided distribution and needs no guidance when it samples);
* the **fake** denoiser, a copy of the teacher trained online on the student's samples with the teacher's own
  regression, so that it tracks the student's distribution.

The gradient of the reverse KL between the two noised distributions with respect to the sample is the difference of
their scores, ``s_fake(x_t) - s_real(x_t) = alpha_t / sigma_t^2 * (mu_fake - mu_real)`` for data estimates
``mu``. DMD descends it with the time-dependent factor replaced by a normaliser,

    grad_x = w * (mu_fake(x_t) - mu_real(x_t)),      w = 1 / mean |x - mu_real(x_t)|,

written as the loss ``0.5 * || x - sg(x - grad_x) ||^2`` (mean over entries), whose gradient in ``x`` is exactly
``grad_x`` (:func:`distribution_matching_loss`). The fake denoiser is updated ``--fake_updates_per_step`` times per
student update (DMD2's two time-scale rule), and DMD2's regression on teacher pairs is not used.

With ``--gan_weight`` > 0 a discriminator (genzoo's GAN discriminator: a DCGAN on images, an MLP on vectors) learns to
tell real training data from the student's samples, and the student's loss adds ``gan_weight`` times the generator
loss: a learned loss on *real data*, which lets the student be better than its teacher (DMD2).

A K-step student (``--student_steps K``, 2-4) samples on the flow-map grid ``0 = t_0 < ... < t_K = 1``; training
picks a step ``k`` and builds its input by running the current student from noise for ``k`` steps (DMD2's backward
simulation), so the student learns on the inputs it meets when sampling.

The teacher must be a model of data noised with *independent* noise (a DDPM, or flow matching with ``--coupling
independent``): a model trained on an optimal-transport coupling gives the conditional mean of that coupling, which
is not the denoiser the fake learns, and a teacher whose ``recipe.yaml`` says so is refused.

The student is a one-time model ``u(x_t, t)`` on the straight flow path, saved in a :class:`~genzoo.FlowMapPipeline`
that jumps ``x_1 = x_t + (1 - t) u``: one call by default (``K`` calls for a K-step student, stored in the pipeline),
guidance 1. By default it starts from the teacher's weights (``--student_init teacher``; DMD's choice).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch

from ..config import option
from ..conditioning import null_label_id
from ..models import denoiser_sample_shape
from ..pipelines import FlowMapPipeline
from ..pipelines.pipeline_denoising import guide
from ..schedulers import FlowMapEulerScheduler
from .base import Method, randn_like, teacher_option
from .denoising import EMPTY_PROMPT
from .adversarial import AdversarialConfig, adversarial_term, critic_loss
from .gan import build_discriminator

DMD = "distribution matching"
#: The ``model_kind`` of the teachers whose denoiser gives a data estimate at any noise level.
TEACHER_KINDS = ("diffusion", "flow")
STUDENT_INITS = ("teacher", "scratch")
#: The most calls a K-step student may take (DMD2 uses up to 4).
MAX_STUDENT_STEPS = 8


@dataclass
class DMDConfig(AdversarialConfig):
    group_title: ClassVar[str] = "dmd"

    teacher: str | None = teacher_option(
        "the DDPM or flow-matching pipeline to distil (folder or Hub id), loaded frozen; required")
    student_steps: int = option(1, "calls the student samples in: 1 (one step), or 2-4 with DMD2's backward "
                                "simulation (training sees the inputs those steps make)", minimum=1,
                                maximum=MAX_STUDENT_STEPS, group=DMD)
    student_init: str = option("teacher", "teacher: student and fake denoiser start from the teacher's weights (DMD's "
                               "choice); scratch: from a fresh initialisation", choices=STUDENT_INITS, group=DMD)
    fake_updates_per_step: int = option(5, "fake-denoiser (and discriminator) updates per student update (DMD2's two "
                                        "time-scale rule)", minimum=1, group=DMD)
    teacher_guidance: float = option(2.0, "class- or text-conditional teachers: classifier-free guidance of the real "
                                     "score, baked into the student (1: none)", minimum=0.0, group=DMD)


class DMDMethod(Method):
    """Distribution matching distillation with a GAN critic (DMD, DMD2): a one-step or few-step student of a frozen
    DDPM or flow-matching teacher (``--method dmd --teacher ...``).

    Three models train: the student (``unet``, kept with EMA and saved), the fake denoiser (``fake_unet``) and, with
    ``--gan_weight`` > 0, a ``discriminator``; the saved pipeline is a ``FlowMapPipeline`` that samples in the
    student's number of calls. See the module docstring and the few-step guide for the losses.

    Args:
        config (DMDConfig): the method's options (``--method dmd``; see the trainer options).
        data (genzoo.data.TrainingData): the training data (real samples for the GAN loss; labels or captions for a
            conditional teacher; otherwise only the batch size).
        context (RunContext | None): what the method may know about the run.
    """

    name = "dmd"
    Config = DMDConfig
    model_names = ("unet", "fake_unet", "discriminator")
    conditionings = ("none", "class", "text")
    trainer_defaults = {"learning_rate": 1e-4, "use_ema": True, "adam_beta1": 0.0, "lr_scheduler": "constant",
                        "lr_warmup_steps": 0}
    # with the GAN loss and R1, so the shared checks (exact resume included) cover every model and term
    smoke_test_options = {"fake_updates_per_step": 2, "gan_weight": 0.1, "r1_gamma": 1.0, "base_channels": 8,
                          "max_channels": 16, "gan_hidden_dim": 16}
    #: The shared checks (genzoo.testing) and the quick benchmark give it the teacher a tiny run of this method makes.
    teacher_method = "flow-matching"
    scale_up = "A larger teacher (the student and the fake denoiser are its size); more steps; `--gan_weight` > 0."

    # ------------------------------------------------------------------ teacher and checks
    def _teacher(self):
        if self.teacher is None:
            raise ValueError(f"--teacher {self.config.teacher}: the teacher pipeline is not loaded (the trainer loads "
                             "it into method.teacher before build_models).")
        return self.teacher

    def check_data(self) -> None:
        if self.config.teacher is None:
            raise ValueError("--method dmd needs --teacher: the DDPM or flow-matching pipeline (folder or Hub id) "
                             "whose distribution the student learns.")

    def check_teacher(self) -> None:
        """Once the trainer has loaded the teacher: a ``ValueError`` naming what is wrong when it is not a DDPM or
        flow-matching pipeline, is conditioned otherwise than ``--conditioning``, knows other classes, or makes
        samples of another shape than the data's (its latents' for a latent teacher)."""
        teacher, source = self._teacher(), self.config.teacher
        kind = getattr(teacher, "model_kind", None)
        if kind not in TEACHER_KINDS or not hasattr(teacher, "unet"):
            raise ValueError(
                f"--teacher {source} holds a {type(teacher).__name__}; --method dmd distils a DDPM or flow-matching "
                "pipeline (a denoiser that gives a data estimate at every noise level)."
            )
        coupling = teacher_recipe(source).get("coupling", "independent")
        if coupling != "independent":
            raise ValueError(
                f"--teacher {source} was trained with --coupling {coupling}: its model is the conditional mean of that "
                "coupling, not of data noised with independent noise, which is what the fake denoiser learns (a "
                "student distilled from it drifts away: moons W2 0.21 -> 0.54 in 1000 student updates). Distil a "
                "teacher trained with --coupling independent (flow matching) or a DDPM."
            )
        conditioning = "text" if getattr(teacher, "text_encoder", None) is not None else (
            "class" if getattr(teacher, "id2label", None) else "none")
        if conditioning != self.conditioning:
            what = "unconditional" if conditioning == "none" else f"{conditioning}-conditional"
            raise ValueError(
                f"--teacher {source} is {what} and --conditioning is {self.conditioning}: the student takes what its "
                f"teacher takes; use --conditioning {conditioning}."
            )
        if conditioning == "class" and len(teacher.id2label) != len(self.data.id2label or {}):
            raise ValueError(
                f"--teacher {source} knows {len(teacher.id2label)} classes and {self.data.name} has "
                f"{len(self.data.id2label or {})}: distil on the data the teacher was trained on."
            )
        if self.config.gan_weight > 0 and getattr(teacher, "vae", None) is not None:
            raise ValueError(
                f"--gan_weight {self.config.gan_weight} with the latent teacher {source}: the GAN loss on latents is "
                "not supported yet; use --gan_weight 0 (distribution matching alone works in the latent space)."
            )
        if getattr(teacher, "vae", None) is not None:
            from .latents import latent_shape

            data_shape = latent_shape(teacher.vae, self.data.sample_shape)
        else:
            data_shape = tuple(self.data.sample_shape)
        if self.sample_shape != tuple(data_shape):
            raise ValueError(
                f"--teacher {source} makes samples of shape {self.sample_shape}, and {self.data.name}'s samples have "
                f"shape {tuple(data_shape)}; distil on data of the teacher's shape (or change --resolution)."
            )

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """The shape of what the student generates: the teacher denoiser's (latents for a latent teacher)."""
        return tuple(denoiser_sample_shape(self._teacher().unet))

    # ------------------------------------------------------------------ models
    def build_models(self):
        self.check_teacher()
        teacher = self._teacher()
        channels = self.sample_shape[0]
        student = _trainable_copy(teacher.unet, self.config.student_init, out_channels=channels)
        fake = _trainable_copy(teacher.unet, self.config.student_init)
        models = {"unet": student, "fake_unet": fake}
        if self.config.gan_weight > 0:
            classes = len(self.data.id2label) if self.conditioning == "class" else None
            models["discriminator"] = build_discriminator(self.config, self.data.kind, self.sample_shape, classes)
        return models

    def optimizer_groups(self):
        fake = ["fake_unet"] + (["discriminator"] if self.config.gan_weight > 0 else [])
        return {"fake": fake, "student": ["unet"]}

    def phases(self, step):
        if (step + 1) % self.config.fake_updates_per_step == 0:
            return ["fake", "student"]
        return ["fake"]

    def ema_models(self):
        return ["unet"]

    # ------------------------------------------------------------------ schedulers
    @property
    def student_scheduler(self) -> FlowMapEulerScheduler:
        """The saved pipeline's scheduler: a flow-map Euler step on the straight path, in the teacher's time units
        for a flow-matching teacher (so a student copied from it reads its time input as the teacher did)."""
        teacher = self._teacher()
        if teacher.model_kind == "flow":
            teacher_config = teacher.scheduler.config
            keep = ("num_train_timesteps", "scale_timesteps", "shift")
            return FlowMapEulerScheduler(**{k: teacher_config[k] for k in keep if k in teacher_config})
        return FlowMapEulerScheduler()

    @property
    def student_grid(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(timesteps, flow_times)`` of the student's sampling grid: its ``student_steps`` model time inputs and
        the flow times ``t_0 = 0 < ... < t_K = 1`` (CPU)."""
        if not hasattr(self, "_grid"):
            self._grid = self.student_scheduler.grid(self.config.student_steps)
        return self._grid

    # ------------------------------------------------------------------ conditioning
    def conditions(self, batch, device) -> dict:
        """The models' conditioning keyword arguments for a batch: the real batch's labels or captions."""
        teacher = self._teacher()
        if self.conditioning == "class":
            return {"class_labels": batch["label"].to(device)}
        if self.conditioning == "text":
            from ..text import encode_prompts

            with torch.no_grad():
                hidden = encode_prompts(teacher.tokenizer, teacher.text_encoder, list(batch["caption"]), device=device)
            return {"encoder_hidden_states": hidden}
        return {}

    def unconditional(self, cond: dict) -> dict | None:
        """The conditioning guidance mixes in for ``cond``'s batch: the null label, or the empty prompt's hidden
        states (the frozen encoder's, computed once); ``None`` for an unconditional teacher."""
        if self.conditioning == "class":
            return {"class_labels": torch.full_like(cond["class_labels"], null_label_id(self._teacher().id2label))}
        if self.conditioning == "text":
            hidden = cond["encoder_hidden_states"]
            if getattr(self, "_empty_prompt", None) is None or self._empty_prompt.device != hidden.device:
                from ..text import encode_prompts

                teacher = self._teacher()
                with torch.no_grad():
                    self._empty_prompt = encode_prompts(teacher.tokenizer, teacher.text_encoder, [EMPTY_PROMPT],
                                                        device=hidden.device)
            return {"encoder_hidden_states": self._empty_prompt.expand_as(hidden)}
        return None

    # ------------------------------------------------------------------ the student's samples
    def generate(self, student, batch_size: int, cond: dict, like: torch.Tensor, generator) -> torch.Tensor:
        """The student's data estimate ``x = x_k + (1 - t_k) u(x_k, t_k)`` at a step ``k`` of its grid drawn
        uniformly, ``x_k`` made by running it from noise for ``k`` steps without gradients (backward simulation;
        ``k = 0``, plain noise, for a one-step student). Gradients flow through the last call only."""
        timesteps, times = self.student_grid
        noise = randn_like(like.new_empty((batch_size, *self.sample_shape)), generator)
        steps = len(timesteps)
        k = int(torch.randint(steps, (), generator=generator, device=generator.device)) if steps > 1 else 0
        x = noise
        with torch.no_grad():
            for i in range(k):
                u = student(x, _times(timesteps[i], x), **cond).sample
                x = x + float(times[i + 1] - times[i]) * u
        u = student(x, _times(timesteps[k], x), **cond).sample
        return x + float(1 - times[k]) * u

    # ------------------------------------------------------------------ losses
    def loss(self, phase, models, batch, step, generator):
        real = batch["sample"]
        cond = self.conditions(batch, real.device)
        if phase == "fake":
            return self._fake_loss(models, real, cond, generator)
        return self._student_loss(models, real, cond, generator)

    def _noised(self, x, generator):
        scheduler = self._teacher().scheduler
        timesteps = scheduler.sample_timesteps(x.shape[0], generator=generator, device=x.device)
        noise = randn_like(x, generator)
        return scheduler.add_noise(x, noise, timesteps), noise, timesteps

    def _fake_loss(self, models, real, cond, generator):
        """The fake denoiser's regression on the student's samples (the teacher's own loss), plus the
        discriminator's loss (and R1) with the GAN."""
        with torch.no_grad():
            x = self.generate(models["unet"], real.shape[0], cond, real, generator)
        scheduler = self._teacher().scheduler
        noisy, noise, timesteps = self._noised(x, generator)
        output = models["fake_unet"](noisy, timesteps, **cond).sample[:, : x.shape[1]]
        target = scheduler.training_target(x, noise, timesteps)
        loss = (output.float() - target.float()).pow(2).mean()
        terms = {"loss_fake": loss.detach()}
        if self.config.gan_weight > 0:
            loss_d, more = critic_loss(self.config, models["discriminator"], real, x, cond.get("class_labels"))
            loss, terms = loss + loss_d, {**terms, **more}
        return loss, terms

    def _student_loss(self, models, real, cond, generator):
        x = self.generate(models["unet"], real.shape[0], cond, real, generator)
        noisy, _, timesteps = self._noised(x.detach(), generator)
        with torch.no_grad():
            real_estimate = self.teacher_estimate(noisy, timesteps, cond, self.unconditional(cond))
            fake_estimate = self.data_estimate(models["fake_unet"], noisy, timesteps, cond)
        loss = distribution_matching_loss(x, real_estimate, fake_estimate)
        terms = {"loss_dmd": loss.detach()}
        if self.config.gan_weight > 0:
            term, more = adversarial_term(self.config, models["discriminator"], x, cond.get("class_labels"))
            loss, terms = loss + term, {**terms, **more}
        terms["loss"] = loss.detach()
        return loss, terms

    def data_estimate(self, model, noisy, timesteps, cond, output=None):
        """A denoiser's data estimate at ``noisy`` through the teacher scheduler's path (its ``prediction_type``)."""
        scheduler = self._teacher().scheduler
        if output is None:
            output = model(noisy, timesteps, **cond).sample
        path = scheduler.path(timesteps, noisy)
        return path.data_from(output[:, : noisy.shape[1]], noisy, scheduler.config.prediction_type)

    def teacher_estimate(self, noisy, timesteps, cond, uncond):
        """The teacher's data estimate, guided at ``--teacher_guidance`` when it is conditional (one batched call on
        ``[unconditional; conditional]``, as its pipeline samples)."""
        unet, scale = self._teacher().unet, self.config.teacher_guidance
        if uncond is None or scale == 1.0:
            return self.data_estimate(unet, noisy, timesteps, cond)
        both = {key: torch.cat([uncond[key], value]) for key, value in cond.items()}
        output = unet(torch.cat([noisy, noisy]), torch.cat([timesteps, timesteps]), **both).sample
        return self.data_estimate(unet, noisy, timesteps, cond, output=guide(output, scale, noisy.shape[1]))

    # ------------------------------------------------------------------ pipeline and facts
    def make_pipeline(self, models):
        teacher = self._teacher()
        guidance = 1.0 if self.conditioning != "none" else None
        text = ({"tokenizer": teacher.tokenizer, "text_encoder": teacher.text_encoder}
                if self.conditioning == "text" else {})
        return FlowMapPipeline(unet=models["unet"], scheduler=self.student_scheduler, vae=getattr(teacher, "vae", None),
                               default_num_inference_steps=self.config.student_steps, default_guidance_scale=guidance,
                               **text)

    def describe(self):
        c = self.config
        facts = {"teacher": c.teacher, "student_steps": c.student_steps, "student_init": c.student_init,
                 "fake_updates_per_step": c.fake_updates_per_step, "gan_weight": c.gan_weight,
                 "conditioning": self.conditioning}
        if self.teacher is not None:
            facts["teacher_pipeline"] = type(self.teacher).__name__
        if self.conditioning != "none":
            facts["teacher_guidance"] = c.teacher_guidance
        if c.gan_weight > 0:
            facts.update(gan_loss=c.gan_loss, r1_gamma=c.r1_gamma)
        return facts


def distribution_matching_loss(x: torch.Tensor, real_estimate: torch.Tensor, fake_estimate: torch.Tensor) -> torch.Tensor:
    """DMD's loss on samples ``x``, given the real (teacher) and fake denoisers' data estimates at their noised copies:
    ``0.5 * mean || x - sg(x - grad) ||^2`` with ``grad = w * (fake - real)``, ``w = 1 / mean |x - real|`` per sample,
    so that its gradient in ``x`` is ``grad / numel(x)`` (the score difference, normalised; see the module
    docstring).

    Args:
        x: the student's samples (with gradients).
        real_estimate: the teacher's data estimate at the noised samples (no gradients).
        fake_estimate: the fake denoiser's data estimate there (no gradients).

    Returns:
        The scalar loss.
    """
    dims = tuple(range(1, x.ndim))
    # differences in the estimates' own precision first (they nearly cancel at low noise), then float32
    weight = 1.0 / (x.detach() - real_estimate).float().abs().mean(dim=dims, keepdim=True).clamp(min=1e-8)
    grad = (weight * (fake_estimate - real_estimate).float()).detach()
    # = 0.5 * mean(x - sg(x - grad))^2 in value and gradient, without rounding x - (x - grad) (grad << x) in float32
    return ((x.float() - x.detach().float()) * grad).mean() + 0.5 * grad.pow(2).mean()


def teacher_recipe(source) -> dict:
    """The ``recipe.yaml`` a genzoo run saved beside the teacher pipeline (a folder, or a Hub repo's snapshot),
    ``{}`` where it has none."""
    from ..model_index import folder_root, read_yaml_mapping
    from ..pipelines.resolve import resolve_pretrained_path

    folder = Path(resolve_pretrained_path(source))
    return read_yaml_mapping(folder / "recipe.yaml", root=folder_root(folder))


def _times(timestep: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """One model time input per sample of ``like``."""
    return timestep.to(like.device).expand(like.shape[0])


def _trainable_copy(model, init: str, out_channels: int | None = None):
    """A trainable model like the teacher's ``model``: its copy (``init="teacher"``), or a fresh one of its config
    (``"scratch"``). With ``out_channels`` different from the model's (a DDPM teacher that also predicts a variance),
    a model of that many outputs, holding the teacher's weights wherever their shapes agree."""
    config = dict(model.config)
    if out_channels is not None and config.get("out_channels") not in (None, out_channels):
        config["out_channels"] = out_channels
        fresh = type(model).from_config(config)
        if init == "teacher":
            own = fresh.state_dict()
            fresh.load_state_dict({k: v for k, v in model.state_dict().items() if k in own and own[k].shape == v.shape},
                                  strict=False)
        return fresh.to(device=next(model.parameters()).device, dtype=torch.float32).train().requires_grad_(True)
    if init == "teacher":
        new = copy.deepcopy(model)
    else:
        new = type(model).from_config(config).to(next(model.parameters()).device)
    return new.float().train().requires_grad_(True)

"""The one trainer: any registered method, on any data, with Accelerate.

Reads top to bottom like Accelerate's examples: arguments, accelerator, data, method and models, optimisers, EMA,
resume, loop, save. The method supplies models, losses and its pipeline (:mod:`genzoo.methods.base`); the EMA copies
are :mod:`genzoo.training.ema`, the checkpoints :mod:`genzoo.training.checkpoints`; everything else is here, and
nothing here knows a method by name.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import PIL.Image
import torch
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, ProjectConfiguration, set_seed
from diffusers.optimization import get_scheduler
from tqdm.auto import tqdm

from .. import registry
from ..config import RecipeError
from ..data import load_training_data
from ..files import FolderInUseError, FolderLock
from ..methods.base import RunContext
from ..pipelines.loading import commit_pipeline
from ..visualize import save_samples
from .arguments import TrainerConfig, finish_args, parse_args, write_recipe
from .checkpoints import (
    CHECKPOINTS,
    RECIPE,
    CheckpointManager,
    check_resumable,
    list_checkpoints,
    remove_partial_checkpoints,
    resolve_resume,
)
from .ema import ModelEMAs
from .errors import SAVE_ERRORS, CheckpointError, TrainingError, TrainingInterrupted

logger = logging.getLogger("genzoo.training")

#: What the final save writes beside the pipeline; with the pipeline, they replace the previous run's in one swap.
FINAL_FILES = (RECIPE, "metrics.json", "samples.png")
#: Files that describe a saved pipeline and are stale once it is replaced (``genzoo eval`` writes eval.json).
DESCRIBES_PIPELINE = ("eval.json",)
#: The signals that stop a run cleanly (:meth:`Trainer.stopping_on_signals`).
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@dataclass
class TrainResult:
    """What a training run returns.

    Args:
        output_dir: the run's folder (the saved pipeline, ``samples.png``, ``metrics.json``, ``recipe.yaml``).
        global_step: the optimiser steps taken in total (a resumed run's included).
        metrics: what ``metrics.json`` holds: losses, timings, the machine, parameter counts.
    """

    output_dir: Path
    global_step: int
    metrics: dict = field(default_factory=dict)


def peak_memory(device: torch.device) -> dict:
    """Peak resident memory of this process (Linux VmHWM: this program only, not a parent it was forked from), and
    peak CUDA memory allocated by torch when training on a GPU, in MiB."""
    peak = {}
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                peak["peak_rss_mib"] = round(int(line.split()[1]) / 1024, 1)
    except OSError:  # not Linux: the rusage figure (kB on Linux, bytes on macOS) is the best there is
        import resource
        import sys

        scale = 2**20 if sys.platform == "darwin" else 2**10
        peak["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale, 1)
    if device.type == "cuda":
        peak["peak_cuda_memory_mib"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    return peak


#: Accelerate's distributed types the trainer refuses, each with why (every genzoo method; see docs/training.md).
UNSUPPORTED_DISTRIBUTED = {
    "FSDP": "FSDP shards each model's weights across processes, but the trainer uses whole models outside their "
            "forward pass (the EMA, sample grids and the saved pipeline on the main process; the GAN's generator "
            "inside the discriminator's loss) and resumes only its safetensors checkpoints",
    "DEEPSPEED": "a DeepSpeed engine takes one model and one optimiser (the GAN has two of each), steps inside "
                 "backward (so --gradient_accumulation_steps and --max_grad_norm would not be the trainer's) and "
                 "saves pickled engine checkpoints that genzoo's data-only resume refuses",
}


def check_distributed_type(distributed_type, method: str) -> None:
    """Refuse, before anything is read or written, an Accelerate set-up the trainer cannot run (FSDP, DeepSpeed);
    DDP on one or several machines, one process and the CPU are what it supports."""
    name = getattr(distributed_type, "value", str(distributed_type))
    if name in UNSUPPORTED_DISTRIBUTED:
        raise RecipeError(
            f"Accelerate's distributed type {name} cannot train method {method!r}: {UNSUPPORTED_DISTRIBUTED[name]}. "
            "Use DDP (a whole copy of the models on every GPU) instead: accelerate launch --config_file "
            "train/configs/multi_gpu.yaml (one machine) or train/configs/multi_node.yaml (several)."
        )


def describe_machine(device: torch.device) -> str:
    """One line for model cards: CPU architecture and cores, and the GPU when training ran on one."""
    import platform

    text = f"{platform.machine()}, {os.cpu_count()} CPU cores, {platform.system()}, torch {torch.__version__}"
    if device.type == "cuda":
        text += f", {torch.cuda.get_device_name(device)}"
    return text


def load_teacher(source: str, device: torch.device):
    """A trained pipeline (folder or Hub id) as a frozen teacher: on ``device``, every module in eval mode with
    ``requires_grad`` off, no progress bars."""
    from ..pipelines import load_frozen_pipeline

    try:
        return load_frozen_pipeline(source, device, "--teacher")
    except ValueError as exc:
        raise TrainingError(str(exc)) from None


def start_from(models: dict, source: str, device: torch.device) -> list[str]:
    """``--init_from``: copy the weights of the pipeline ``source`` (folder or Hub id) into ``models``, component by
    component where a component has a model's name; returns the names copied. A ``TrainingError`` (one line) when no
    component matches, or when a matching one was built with another configuration than the model (naming the
    differing keys): its weights would not fit, or would mean something else."""
    pipe = load_teacher(source, device)
    copied = []
    for name, model in models.items():
        component = pipe.components.get(name)
        if not isinstance(component, torch.nn.Module):
            continue
        # as config.json holds them (tuples as lists), the bookkeeping keys (_name_or_path, _id2label...) aside
        ours, theirs = (json.loads(json.dumps(dict(getattr(m, "config", {})), default=str)) for m in (model, component))
        differ = sorted(k for k in set(ours) | set(theirs) if not k.startswith("_") and ours.get(k) != theirs.get(k))
        if type(component) is not type(model) or differ:
            raise TrainingError(
                f"--init_from {source}: its {name} is a {type(component).__name__} built with other options than this "
                f"recipe's {type(model).__name__} (differing: {', '.join(differ) or 'the class'}); use the recipe that "
                "trained it (its recipe.yaml), changing only what does not build the model."
            )
        model.load_state_dict(component.state_dict())
        copied.append(name)
    if not copied:
        raise TrainingError(f"--init_from {source}: none of its components ({', '.join(pipe.components)}) is one of "
                            f"this method's models ({', '.join(models)}).")
    logger.info("--init_from %s: started %s from its weights", source, ", ".join(copied))
    return copied


# ------------------------------------------------------------------------------------------------ the trainer
class PhaseModule(torch.nn.Module):
    """The models one optimiser updates, with the method's loss as ``forward``.

    This is what Accelerate prepares (and wraps in DistributedDataParallel): gradients are synchronised for whatever
    the loss calls on the models -- ``vae.encode``, second derivatives for penalties -- not only for ``forward``.
    """

    def __init__(self, method, phase: str, models: dict[str, torch.nn.Module]):
        super().__init__()
        self.method, self.phase = method, phase
        self.models = torch.nn.ModuleDict(models)

    def forward(self, batch, step, generator, frozen):
        return self.method.loss(self.phase, {**frozen, **dict(self.models.items())}, batch, step, generator)


class Trainer:
    """Trains ``args.method`` on ``args.dataset``; ``run()`` returns a ``TrainResult``.

    The trainer reads its own options from ``args`` as a ``TrainerConfig`` and hands the method its own ``Config``.

    Args:
        args (argparse.Namespace): the run's recipe, the flat namespace ``genzoo.training.parse_args`` returns.
    """

    def __init__(self, args):
        self.args = args
        self.config = TrainerConfig.from_mapping(args)
        self.output_dir = Path(self.config.output_dir)
        self._grid_samples = (None, None, None)  # (step, samples, PNG) of the last sample grid
        self.lock: FolderLock | None = None  # the output folder's lock, held by the main process
        self._signal: int | None = None  # a stop signal that arrived while training, handled at the end of the step
        self._training = False  # False while setting up: a signal then stops the run at once
        self._checkpointed_step: int | None = None

    # -------------------------------------------------------------------------------------------- setup
    def setup(self):
        self._make_accelerator()
        self._lock_output_dir()
        self.resume = self._claim_output_dir()
        self._load_data()
        self._build_method_and_models()
        self._make_optimizers()
        self._prepare()
        self.emas = ModelEMAs.for_run(self.method, self.raw, self.config, self.accelerator.device)
        # The trainer's own randomness (noise, timesteps, latents): one generator per process, checkpointed.
        self.generator = torch.Generator(device="cpu").manual_seed(
            self.config.seed * 1000 + self.accelerator.process_index
        )
        self.checkpoints = CheckpointManager(self.accelerator, self.output_dir, self.args, self.config, self.method,
                                             self.generator, self.lr_schedulers, self.emas, len(self.groups))
        self.global_step = 0
        # Every process makes the folder (idempotent): a method may write into it on its first step, and another
        # process can get there before the main one has made it (the test plugin's --record_batches did).
        self.output_dir.mkdir(parents=True, exist_ok=True)
        from ..secrets import redact, redact_logs
        from .arguments import recipe_of

        secrets = redact_logs(self.args).secrets  # no logged line carries --hub_token, $HF_TOKEN, $WANDB_API_KEY...
        if self.accelerator.is_main_process:  # trackers get the recipe (no secret option), redacted, not the namespace
            tracker_config = {k: v for k, v in redact(recipe_of(self.args), secrets).items()
                              if isinstance(v, (int, float, str, bool))}
            self.accelerator.init_trackers("genzoo", config=tracker_config)

    def _make_accelerator(self):
        config = self.config
        multi_process_without_gpu = int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()
        self.accelerator = Accelerator(
            mixed_precision=config.mixed_precision,
            log_with=None if config.logger == "none" else config.logger,
            project_config=ProjectConfiguration(
                project_dir=str(self.output_dir), logging_dir=str(self.output_dir / config.logging_dir)
            ),
            dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=config.seed),
            cpu=config.cpu or multi_process_without_gpu,  # Accelerate picks gloo for several CPU processes
        )
        check_distributed_type(self.accelerator.distributed_type, config.method)
        if config.mixed_precision == "fp16" and self.accelerator.device.type == "cpu":
            raise RecipeError(
                "--mixed_precision fp16: float16 autocast needs a GPU, and this run is on the CPU (where it would "
                "silently train in float32); use --mixed_precision bf16 or no."
            )
        logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
        logging.getLogger("accelerate").setLevel(logging.WARNING)  # one line per checkpoint file is too chatty
        if not self.accelerator.is_main_process:
            logging.getLogger("genzoo").setLevel(logging.WARNING)
        set_seed(config.seed)  # model initialisation: identical on every process

    def _same_on_every_process(self, value):
        """The main process's ``value`` on every process (a decision only the main process can make)."""
        if self.accelerator.num_processes == 1:
            return value
        from accelerate.utils import broadcast_object_list

        box = [value]
        broadcast_object_list(box, from_process=0)
        return box[0]

    def _lock_output_dir(self):
        """Own ``--output_dir`` for the run's life: the main process takes its :class:`~genzoo.files.FolderLock`
        (released on any exit, by the system if need be), so a second run, a resume or an overwrite into a folder
        that a live run holds is refused at once, on every process, before anything in it is read or changed."""
        refusal = ""
        if self.accelerator.is_main_process:
            try:
                self.lock = FolderLock(self.output_dir, what=f"a genzoo training run ({self.config.method})").acquire()
            except FolderInUseError as exc:
                refusal = f"--output_dir {exc}"
            else:
                if self.lock.stale:
                    logger.warning("%s: %s ended without releasing the folder (killed?); this run takes it over.",
                                   self.output_dir, FolderLock.describe(self.lock.stale))
        refusal = self._same_on_every_process(refusal)
        if refusal:
            raise CheckpointError(refusal)

    def release_output_dir(self):
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    def _claim_output_dir(self) -> Path | None:
        """The checkpoint to resume, if any, after making sure this run may write into ``--output_dir``.

        A folder that already holds a genzoo run (a pipeline, a recipe or checkpoints) is refused unless this run
        resumes one of its checkpoints with the same recipe, or ``--overwrite_output_dir`` is given; then the old
        checkpoints, sample grids and logs are removed now and its pipeline stays until the new one replaces it.
        """
        config, out = self.config, self.output_dir
        if self.accelerator.is_main_process:  # what an interrupted checkpoint write left (the folder is ours now)
            remove_partial_checkpoints(out)
        resume = resolve_resume(out, config.resume_from_checkpoint)
        if resume is not None:
            check_resumable(resume, config.method, self.accelerator.num_processes, self.args)
            if Path(resume).resolve().parent.parent == out.resolve():
                return resume
        found = run_contents(out)
        if found and not config.overwrite_output_dir:
            nothing = (" has no checkpoint to resume but" if config.resume_from_checkpoint == "latest" and resume is None
                       else "")
            raise CheckpointError(
                f"--output_dir {out}{nothing} already holds a genzoo run ({', '.join(found)}). Pass "
                "--resume_from_checkpoint latest to continue it, --overwrite_output_dir to replace it, or choose "
                "another --output_dir."
            )
        if found and self.accelerator.is_main_process:
            for name in (CHECKPOINTS, "samples", config.logging_dir):
                shutil.rmtree(out / name, ignore_errors=True)
            logger.info("--overwrite_output_dir: removed the previous run's checkpoints, samples and logs in %s", out)
        self.accelerator.wait_for_everyone()
        return resume

    def _load_data(self):
        self.data = load_training_data(self.args)
        logger.info("data: %s", self.data.describe())
        batch_size = self.config.train_batch_size
        self.dataloader = torch.utils.data.DataLoader(
            self.data.dataset, batch_size=batch_size, shuffle=True, drop_last=True,
            num_workers=self.config.dataloader_num_workers,
        )
        if len(self.dataloader) == 0:
            raise TrainingError(
                f"The data set has {len(self.data.dataset)} samples, fewer than one batch of --train_batch_size "
                f"{batch_size}; lower the batch size."
            )

    def _build_method_and_models(self):
        """The method (with its typed options, the run's context and, if it asks for one, its frozen teacher), then
        its models and optimiser groups."""
        accelerator = self.accelerator
        context = RunContext(output_dir=self.output_dir, seed=self.config.seed,
                             process_index=accelerator.process_index, num_processes=accelerator.num_processes,
                             device=accelerator.device)
        self.method = registry.get("method", self.config.method).from_options(self.args, self.data, context)
        self.method.check_conditioning()
        self.method.check_data()
        teacher = self.method.teacher_source()
        if teacher is not None:
            self.method.teacher = load_teacher(teacher, accelerator.device)
            logger.info("teacher: %s (%s)", teacher, type(self.method.teacher).__name__)
        self.raw = self.method.build_models()  # name -> plain module; what EMA, samples and the pipeline use
        if self.config.init_from is not None:
            start_from(self.raw, self.config.init_from, accelerator.device)
        self.method.prepare_training()
        self.model_names = list(self.raw)
        groups = self.method.optimizer_groups()
        owners = [name for names in groups.values() for name in names]
        if sorted(owners) != sorted(self.model_names):
            raise TrainingError(
                f"Method {self.config.method!r}: every model must belong to exactly one optimizer group; models "
                f"{self.model_names}, groups {groups}."
            )
        self.groups = groups

    def _make_optimizers(self):
        """One ``AdamW`` and one learning-rate schedule per group; schedules count optimiser updates."""
        config = self.config
        if config.max_train_steps is None:
            batches_per_process = len(self.dataloader) // self.accelerator.num_processes
            steps = config.num_epochs * max(1, batches_per_process // config.gradient_accumulation_steps)
            config.max_train_steps = self.args.max_train_steps = steps  # the recipe records it
        self.optimizers, self.lr_schedulers = {}, {}
        for group, names in self.groups.items():
            options = dict(lr=config.learning_rate, betas=(config.adam_beta1, config.adam_beta2),
                           weight_decay=config.adam_weight_decay, eps=config.adam_epsilon)
            options.update(self.method.optimizer_kwargs(group))
            params = [p for name in names for p in self.raw[name].parameters()]
            self.optimizers[group] = torch.optim.AdamW(params, **options)
            self.lr_schedulers[group] = get_scheduler(
                config.lr_scheduler, optimizer=self.optimizers[group], num_warmup_steps=config.lr_warmup_steps,
                num_training_steps=config.max_train_steps,
            )

    def _prepare(self):
        """Let Accelerate wrap each group's loss (as a :class:`PhaseModule`), optimiser and the data loader."""
        accelerator, groups = self.accelerator, self.groups
        phase_modules = {g: PhaseModule(self.method, g, {n: self.raw[n] for n in names}) for g, names in groups.items()}
        prepared = accelerator.prepare(*phase_modules.values(), *self.optimizers.values(), self.dataloader)
        self.phase_modules = dict(zip(phase_modules, prepared[: len(groups)]))
        self.optimizers = dict(zip(self.optimizers, prepared[len(groups) : 2 * len(groups)]))
        self.dataloader = prepared[-1]

    # -------------------------------------------------------------------------------------------- checkpoints
    def save_checkpoint(self):
        """A checkpoint of this step (:meth:`CheckpointManager.save`), refused while any weight is not finite."""
        self.check_finite_weights(f"checkpoint {self.global_step}")
        self.checkpoints.save(self.global_step)
        self._checkpointed_step = self.global_step

    # -------------------------------------------------------------------------------------------- one update
    def _update(self, batches):
        """One optimiser update of every phase of this step, accumulating gradients over ``batches``."""
        accelerator = self.accelerator
        terms_sum: dict[str, float] = {}
        for phase in self.method.phases(self.global_step):
            own = set(self.groups[phase])
            for name, model in self.raw.items():  # gradients never leak into another group's models
                model.requires_grad_(name in own)
            frozen = {name: model for name, model in self.raw.items() if name not in own} | self.emas.modules
            module, optimizer = self.phase_modules[phase], self.optimizers[phase]
            for i, batch in enumerate(batches):
                # no gradient all-reduce until the last micro-batch of the update
                sync = contextlib.nullcontext() if i == len(batches) - 1 else accelerator.no_sync(module)
                with sync:
                    loss, terms = module(batch, self.global_step, self.generator, frozen)
                    self._check_finite(phase, loss, terms)
                    accelerator.backward(loss / len(batches))
                for key, value in terms.items():
                    terms_sum[key] = terms_sum.get(key, 0.0) + float(value.detach()) / len(batches)
            if self.config.max_grad_norm > 0:
                accelerator.unscale_gradients(optimizer=optimizer)
                params = [p for name in self.groups[phase] for p in self.raw[name].parameters()]
                torch.nn.utils.clip_grad_norm_(params, self.config.max_grad_norm)
            optimizer.step()
            self.lr_schedulers[phase].step()
            optimizer.zero_grad(set_to_none=True)
            self.emas.step(self.groups[phase])
        for model in self.raw.values():
            model.requires_grad_(True)
        return terms_sum

    def _check_finite(self, phase, loss, terms):
        """Stop on a NaN or infinite loss term, naming the step and the term (every process stops together)."""
        values = {"loss": loss, **terms}
        bad = {k: float(v.detach().float().mean()) for k, v in values.items() if not torch.isfinite(v.detach()).all()}
        flag = torch.tensor([float(len(bad))], device=self.accelerator.device)
        if self.accelerator.num_processes > 1:
            flag = self.accelerator.reduce(flag, reduction="sum")
        if flag.item() > 0:
            checkpoints = list_checkpoints(self.output_dir)
            kept = f"the last good checkpoint is {checkpoints[-1]}" if checkpoints else "no checkpoint was saved yet"
            where = ", ".join(f"{k}={v}" for k, v in bad.items()) or "on another process"
            raise TrainingError(
                f"Non-finite loss at step {self.global_step + 1}, phase {phase!r}: {where}. Training stopped and "
                f"nothing was saved for this step ({kept}). Try a lower --learning_rate or --max_grad_norm, or "
                "--mixed_precision no."
            )

    # -------------------------------------------------------------------------------------------- sampling
    def pipeline(self):
        return self.method.make_pipeline({name: self.raw[name] for name in self.model_names})

    def sample(self, num: int):
        """``num`` samples from the current (EMA) models with a fixed seed, as a numpy array."""
        with self.emas.swapped_in():
            pipe = self.pipeline()
            pipe.set_progress_bar_config(disable=True)
            out = pipe(
                batch_size=num,
                generator=torch.Generator(device=self.accelerator.device).manual_seed(self.config.seed),
                num_inference_steps=self.config.num_inference_steps,
                output_type="np",
                **self.method.sample_kwargs(num),
            )
        return out.images if hasattr(out, "images") else out.samples

    def save_sample_grid(self, path: Path, title: str):
        """A grid of ``--num_sample_images`` samples at ``path``. The grid of the last step is kept: the final
        ``samples.png`` shows the same models with the same seed, so it is a copy of that step's grid (title
        included) instead of sampling and drawing again."""
        step, samples, drawn = self._grid_samples
        if step == self.global_step and drawn is not None and Path(drawn).is_file():
            shutil.copyfile(drawn, path)
            return path
        if step != self.global_step:
            samples = self.sample(self.config.num_sample_images)
        save_samples(samples, path, title=title)
        self._grid_samples = (self.global_step, samples, path)
        return path

    def log_sample_grid(self):
        path = self.save_sample_grid(
            self.output_dir / "samples" / f"step-{self.global_step:06d}.png",
            f"{self.config.method} on {self.data.name}, step {self.global_step}",
        )
        image = np.asarray(PIL.Image.open(path).convert("RGB"))
        for tracker in self.accelerator.trackers:
            if tracker.name == "tensorboard":
                tracker.log_images({"samples": image[None]}, step=self.global_step, dataformats="NHWC")
            elif tracker.name == "wandb":
                tracker.log_images({"samples": [image]}, step=self.global_step)

    # -------------------------------------------------------------------------------------------- the loop
    def run(self) -> TrainResult:
        """Train: claim the output folder (or resume in it), train to ``max_train_steps``, checkpointing, logging
        and sampling along the way, then save the pipeline, ``samples.png``, ``metrics.json`` and ``recipe.yaml``.

        Returns:
            The run's folder, step count and metrics.

        Raises:
            TrainingError: the run stopped (a non-finite loss or weights, an unusable output folder or checkpoint).
        """
        self.wall_start = time.perf_counter()
        with self.stopping_on_signals():
            try:
                return self._run()
            finally:
                self.release_output_dir()

    @contextlib.contextmanager
    def stopping_on_signals(self):
        """SIGTERM and SIGINT stop the run cleanly: while it sets up, at once (as an exception, so that writes in
        progress -- a teacher-pair cache -- clean up after themselves); while it trains, at the end of the step the
        signal arrived in, on every process at the same step, after a checkpoint of that step with
        ``--checkpoint_on_signal`` (:meth:`stop_if_signalled`). A second SIGINT stops at once; a repeated SIGTERM
        (a scheduler that signals every process and the launcher too) changes nothing. Installed only in the main
        thread, where Python delivers signals."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum, frame):
            name = signal.Signals(signum).name
            if not self._training:
                raise TrainingInterrupted(f"Stopped by {name} while setting up, before training began; the folder "
                                          "holds what it held before.", signum)
            if self._signal is not None and signum == signal.SIGINT:
                raise TrainingInterrupted(f"Stopped by a second {name} during step {self.global_step + 1}, which was "
                                          "not saved; the checkpoints are as they were.", signum)
            if self._signal is None:
                logger.warning("%s: stopping at the end of this step", name)
                self._signal = signum

        previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
        try:
            yield
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)

    def stop_if_signalled(self):
        """At the end of a step: if a stop signal arrived on any process, every process stops here (after a
        checkpoint of this step with ``--checkpoint_on_signal``), raising :class:`TrainingInterrupted`."""
        signum = self._signal or 0
        if self.accelerator.num_processes > 1:  # agree: each process may have seen the signal at another moment
            flags = self.accelerator.gather(torch.tensor([signum], device=self.accelerator.device))
            signum = int(flags.max())
        if not signum:
            return
        if self.config.checkpoint_on_signal and self._checkpointed_step != self.global_step:
            self.save_checkpoint()
        checkpoints = list_checkpoints(self.output_dir)
        if checkpoints:
            kept = f"the last complete checkpoint is {checkpoints[-1]}; continue with --resume_from_checkpoint latest"
        else:
            kept = "no checkpoint was saved yet"
        if not self.config.checkpoint_on_signal:
            kept += " (--checkpoint_on_signal saves one at the signal)"
        self.accelerator.end_training()
        raise TrainingInterrupted(f"Stopped by {signal.Signals(signum).name} after step {self.global_step} of "
                                  f"{self.config.max_train_steps}: {kept}.", signum)

    def _run(self) -> TrainResult:
        self.setup()
        config, accelerator = self.config, self.accelerator
        if self.resume is not None:
            self.global_step = self.checkpoints.load(self.resume)

        # Each epoch makes len(dataloader) // accumulation updates (a last partial group of batches is dropped), so
        # the step count alone says where in the data a resumed run continues.
        accumulation = config.gradient_accumulation_steps
        updates_per_epoch = len(self.dataloader) // accumulation
        if updates_per_epoch == 0:
            raise TrainingError(
                f"An epoch has {len(self.dataloader)} batches per process, fewer than --gradient_accumulation_steps "
                f"{accumulation}; lower one of --gradient_accumulation_steps and --train_batch_size."
            )
        epoch, updates_done = divmod(self.global_step, updates_per_epoch)
        skip = updates_done * accumulation
        logger.info(
            "training %s on %s: %d steps of %d x %d samples on %d process(es), %s precision",
            config.method, self.data.name, config.max_train_steps, config.train_batch_size, accumulation,
            accelerator.num_processes, config.mixed_precision,
        )
        progress = tqdm(
            total=config.max_train_steps, initial=self.global_step, desc="steps", disable=not accelerator.is_local_main_process
        )
        recent: list[dict] = []
        start = time.perf_counter()
        start_step = self.global_step
        for module in self.phase_modules.values():
            module.train()
        self._training = True  # from here a signal stops the run at the end of a step
        try:  # the bar ends its line before whatever stops the run prints its own
            while self.global_step < config.max_train_steps:
                self.data.set_epoch(epoch)
                self.dataloader.set_epoch(epoch)
                loader = accelerator.skip_first_batches(self.dataloader, skip) if skip else self.dataloader
                skip = 0
                pending = []
                for batch in loader:
                    pending.append(batch)
                    if len(pending) < accumulation:
                        continue
                    terms = self._update(pending)
                    pending = []
                    self.global_step += 1
                    recent = (recent + [terms])[-50:]
                    lrs = {f"lr/{g}": s.get_last_lr()[0] for g, s in self.lr_schedulers.items()}
                    logs = {**{f"train/{k}": v for k, v in terms.items()}, **lrs}
                    accelerator.log(logs, step=self.global_step)
                    progress.update(1)
                    progress.set_postfix({k: f"{v:.4g}" for k, v in list(terms.items())[:3]}
                                         | {"lr": f"{next(iter(lrs.values())):.2e}"})
                    if self.global_step % config.checkpointing_steps == 0 or self.global_step == config.max_train_steps:
                        self.save_checkpoint()
                    if accelerator.is_main_process and (
                        self.global_step % config.save_images_steps == 0 or self.global_step == config.max_train_steps
                    ):
                        self.log_sample_grid()
                    self.stop_if_signalled()
                    if self.global_step >= config.max_train_steps:
                        break
                epoch += 1
        finally:
            progress.close()
        elapsed = time.perf_counter() - start
        accelerator.wait_for_everyone()
        metrics = self.finish(recent, elapsed, self.global_step - start_step)
        accelerator.end_training()
        return TrainResult(self.output_dir, self.global_step, metrics)

    def check_finite_weights(self, what: str) -> None:
        """Refuse to save ``what`` from weights (or EMA weights) holding NaN or infinity, naming the models."""
        bad = {}
        for name in self.model_names:
            params = [p.detach() for p in self.raw[name].parameters() if p.is_floating_point()]
            params += [p.detach() for p in self.emas.shadow_params(name)]
            count = sum(int((~torch.isfinite(p)).sum()) for p in params)
            if count:
                bad[name] = count
        if bad:
            checkpoints = list_checkpoints(self.output_dir)
            kept = f"the last good checkpoint is {checkpoints[-1]}" if checkpoints else "no checkpoint was saved"
            raise TrainingError(
                f"Not saving {what}: after step {self.global_step} the weights hold non-finite values "
                f"({', '.join(f'{n}: {c}' for n, c in bad.items())}), although every loss was finite. Nothing was "
                f"written ({kept}); try a lower --learning_rate (now {self.config.learning_rate}) or "
                "--max_grad_norm."
            )

    def finish(self, recent, elapsed, steps_this_run):
        """Save the pipeline (EMA weights) with samples.png, metrics.json and recipe.yaml, replacing the previous
        pipeline in one swap (:func:`genzoo.pipelines.loading.commit_pipeline`); push if asked."""
        config, accelerator = self.config, self.accelerator
        self.check_finite_weights("the pipeline")
        metrics = {}
        if accelerator.is_main_process:
            keys = sorted({k for terms in recent for k in terms})
            metrics = {
                "method": config.method,
                "dataset": self.data.name,
                "data": self.data.describe(),
                "global_step": self.global_step,
                "train_batch_size": config.train_batch_size,
                "gradient_accumulation_steps": config.gradient_accumulation_steps,
                "num_processes": accelerator.num_processes,
                "mixed_precision": accelerator.mixed_precision,
                "use_ema": bool(self.emas.averages),
                "seed": config.seed,
                "train_seconds_this_run": round(elapsed, 2),
                "wall_seconds_this_run": None,  # filled in below, once the pipeline and samples are saved
                "machine": describe_machine(accelerator.device),
                "steps_per_second": round(steps_this_run / elapsed, 3) if elapsed > 0 else None,
                "final_losses": {k: float(np.mean([t[k] for t in recent if k in t])) for k in keys},
                "parameters": {n: sum(p.numel() for p in self.raw[n].parameters()) for n in self.model_names},
                **peak_memory(accelerator.device),
                **self.method.describe(),
            }
            pipe = self.save_run(metrics)
            logger.info("saved the %s pipeline, samples.png and metrics.json to %s", type(pipe).__name__, self.output_dir)
            if config.push_to_hub:
                from ..hub import push_folder

                repo_id = config.hub_model_id or self.output_dir.name
                url = push_folder(self.output_dir, repo_id, token=config.hub_token, private=config.hub_private_repo or None)
                logger.info("pushed to the Hub as %s: %s", repo_id, url)
        accelerator.wait_for_everyone()
        return metrics

    def save_run(self, metrics: dict):
        """Write the pipeline, samples.png, metrics.json and recipe.yaml into a new folder and swap it in for
        ``output_dir`` with the entries to keep (checkpoints, logs, files that are not the old pipeline's) linked in:
        a reader sees the previous complete pipeline or this one, never a mix (the pipelines' own atomic save,
        :func:`~genzoo.pipelines.loading.commit_pipeline`, with :data:`FINAL_FILES` and :data:`DESCRIBES_PIPELINE`
        replaced too). Returns the pipeline."""
        pipe = self.pipeline()

        def write(folder: Path):
            with self.emas.swapped_in():
                pipe.save_into(folder)
            self.save_sample_grid(folder / "samples.png", f"{self.config.method} on {self.data.name}")
            write_recipe(self.args, folder / RECIPE)
            metrics["wall_seconds_this_run"] = round(time.perf_counter() - self.wall_start, 1)
            (folder / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")

        try:
            commit_pipeline(self.output_dir, write, replaces=FINAL_FILES + DESCRIBES_PIPELINE)
        except SAVE_ERRORS as exc:
            if isinstance(exc, TrainingError):
                raise
            kept = list_checkpoints(self.output_dir)
            raise CheckpointError(
                f"Could not save the pipeline to {self.output_dir}: {' '.join(str(exc).split())}. The folder is as "
                f"it was ({f'the last complete checkpoint is {kept[-1]}' if kept else 'no checkpoint was saved'}); "
                "free space and resume with --resume_from_checkpoint latest."
            ) from None
        return pipe


def run_contents(folder) -> list[str]:
    """What in ``folder`` shows a genzoo run: a saved pipeline, a recipe, complete checkpoints."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = ["a pipeline"] if (folder / "model_index.json").exists() else []
    if (folder / RECIPE).exists():
        found.append(RECIPE)
    checkpoints = list_checkpoints(folder)
    if checkpoints:
        found.append(f"{len(checkpoints)} checkpoint(s), the last {checkpoints[-1].name}")
    return found


def reset_accelerate_state() -> None:
    """Forget Accelerate's process-wide settings (mixed precision, gradient state), which otherwise refuse to change,
    so that another run in this process (tests, notebooks, docs, the benchmark) may choose its own. The distributed
    set-up (PartialState) is kept. Accelerate's own tests reset state the same way."""
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state()
    GradientState._reset_state()


def train(args) -> TrainResult:
    """Train from a parsed namespace, in this process (or in each process of ``accelerate launch``).

    Args:
        args (argparse.Namespace): the run's options, as ``genzoo.training.parse_args`` returns them.

    Returns:
        The run's folder, step count and metrics.

    Raises:
        RecipeError: an option value that is not allowed.
        TrainingError: the run stopped (a non-finite loss or weights, an unusable output folder or checkpoint).
        genzoo.data.DataError: data that cannot be loaded.
    """
    try:
        return Trainer(finish_args(args)).run()
    finally:
        reset_accelerate_state()


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``train/train.py`` and ``python -m genzoo.training`` (what ``accelerate launch`` runs).

    Bad options, bad data, an occupied output folder and an unusable checkpoint end as one ``error:`` line and exit
    status 2; a run stopped by a non-finite loss or non-finite weights exits with 1; a run stopped by SIGTERM or
    SIGINT says at which step and which checkpoint to resume from, and exits with 128 + the signal. In a multi-process
    run the line is printed once.

    Args:
        argv: the command line without the program name (default: ``sys.argv[1:]``).

    Returns:
        The exit status: 0, 1 or 2, or 128 + the signal that stopped the run.
    """
    import sys

    from ..checks import error_line
    from ..secrets import argv_secrets, redact

    def line(message: str) -> str:
        return f"train.py: {redact(message, argv_secrets(sys.argv[1:] if argv is None else argv))}"

    try:
        train(parse_args(argv, prog="train.py"))
    except TrainingInterrupted as exc:  # every process stopped at the same step: the main process says so
        if int(os.environ.get("RANK", "0")) == 0:
            print(line(error_line(exc)), file=sys.stderr, flush=True)
        return 128 + exc.signum
    except (TrainingError, ValueError, OSError, KeyError) as exc:
        say_once(line(f"error: {error_line(exc)}"))
        return 2 if isinstance(exc, (ValueError, OSError, KeyError)) else 1
    return 0


#: How long a process other than the main one waits before reporting an error of its own (see :func:`say_once`).
OTHER_PROCESS_GRACE = 3.0


def say_once(line: str) -> None:
    """Print the one line that ends a run, once for the whole run. In a multi-process run every process usually
    stops on the same refusal at the same moment: the main process says it at once, and the launcher stops the
    others on the main process's exit while they wait out :data:`OTHER_PROCESS_GRACE`. A process that stops alone
    (an error of its own) still gets its line out after that wait."""
    import sys

    if int(os.environ.get("RANK", "0")) != 0:
        time.sleep(OTHER_PROCESS_GRACE)
    print(line, file=sys.stderr, flush=True)

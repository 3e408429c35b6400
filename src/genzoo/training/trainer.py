"""The one trainer: any registered method, on any data, with Accelerate.

Reads top to bottom like Accelerate's examples: accelerator, data, method and models, optimisers, EMA, resume,
loop, save. The method supplies models, losses and its pipeline (:mod:`genzoo.methods.base`); everything else is
here, and nothing here knows a method by name.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml
import PIL.Image
import torch
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, ProjectConfiguration, set_seed
from diffusers.optimization import get_scheduler
from diffusers.training_utils import EMAModel
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from .. import registry
from ..data import load_training_data
from ..visualize import save_samples
from .arguments import finish_args, parse_args

logger = logging.getLogger("genzoo.training")

CHECKPOINTS = "checkpoints"
PARTIAL = ".partial"
TRAINER_STATE = "trainer_state.json"
RECIPE = "recipe.yaml"
#: Options that describe this invocation rather than the model: left out of the recipe a run writes.
NOT_IN_RECIPE = ("config", "resume_from_checkpoint", "push_to_hub", "hub_model_id", "hub_token", "hub_private_repo")


def write_recipe(args, path: Path) -> None:
    """Every option of the run, as a recipe ``--config`` accepts: training the recipe again reproduces the run."""
    recipe = {k: v for k, v in sorted(vars(args).items()) if k not in NOT_IN_RECIPE}
    path.write_text(
        "# The options of the genzoo training run that wrote this folder. Reproduce it with\n"
        "#   genzoo train --config recipe.yaml\n" + yaml.safe_dump(recipe, sort_keys=True)
    )


class TrainingError(RuntimeError):
    """Training stopped: a non-finite loss, or a checkpoint that cannot be resumed. The message says what to do."""


@dataclass
class TrainResult:
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


def describe_machine(device: torch.device) -> str:
    """One line for model cards: CPU architecture and cores, and the GPU when training ran on one."""
    import platform

    text = f"{platform.machine()}, {os.cpu_count()} CPU cores, {platform.system()}, torch {torch.__version__}"
    if device.type == "cuda":
        text += f", {torch.cuda.get_device_name(device)}"
    return text


# ------------------------------------------------------------------------------------------------ checkpoints
def save_ema(ema: EMAModel, folder) -> None:
    """An ``EMAModel``'s full state (shadow weights as safetensors, counters as JSON), for any model class -- also
    ``transformers`` models, which ``EMAModel.save_pretrained`` cannot rebuild."""
    state = ema.state_dict()
    shadow = state.pop("shadow_params")
    os.makedirs(folder, exist_ok=True)
    save_file({f"shadow.{i}": p.detach().contiguous().cpu() for i, p in enumerate(shadow)},
              os.path.join(folder, "shadow_params.safetensors"))
    Path(folder, "ema_state.json").write_text(json.dumps(state, indent=2) + "\n")


def load_ema(ema: EMAModel, folder) -> None:
    tensors = load_file(os.path.join(folder, "shadow_params.safetensors"))
    state = json.loads(Path(folder, "ema_state.json").read_text())
    state["shadow_params"] = [tensors[f"shadow.{i}"] for i in range(len(tensors))]
    ema.load_state_dict(state)


def checkpoint_dir(output_dir, step: int) -> Path:
    return Path(output_dir) / CHECKPOINTS / f"checkpoint-{step}"


def list_checkpoints(output_dir) -> list[Path]:
    """Complete checkpoints, oldest first. A checkpoint is written as ``checkpoint-N.partial`` and renamed when
    complete, so one that was half-written when the process died is never listed."""
    root = Path(output_dir) / CHECKPOINTS
    if not root.is_dir():
        return []
    found = []
    for path in root.iterdir():
        name = path.name
        if path.is_dir() and name.startswith("checkpoint-") and name[len("checkpoint-"):].isdigit():
            if (path / TRAINER_STATE).is_file():
                found.append(path)
    return sorted(found, key=lambda p: int(p.name.split("-")[1]))


def resolve_resume(output_dir, resume: str | None) -> Path | None:
    if resume is None:
        return None
    if resume == "latest":
        checkpoints = list_checkpoints(output_dir)
        if not checkpoints:
            logger.warning("--resume_from_checkpoint latest: no checkpoint in %s yet; starting from scratch.", output_dir)
            return None
        return checkpoints[-1]
    path = Path(resume)
    if not (path / TRAINER_STATE).is_file():
        raise TrainingError(
            f"--resume_from_checkpoint {resume}: not a complete checkpoint (no {TRAINER_STATE}); use 'latest' or a "
            f"folder from {Path(output_dir) / CHECKPOINTS}."
        )
    return path


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
    """Trains ``args.method`` on ``args.dataset``; ``run()`` returns a :class:`TrainResult`."""

    def __init__(self, args):
        self.args = args
        self.output_dir = Path(args.output_dir)

    # -------------------------------------------------------------------------------------------- setup
    def setup(self):
        args = self.args
        multi_process_without_gpu = int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()
        self.accelerator = accelerator = Accelerator(
            mixed_precision=args.mixed_precision,
            log_with=None if args.logger == "none" else args.logger,
            project_config=ProjectConfiguration(
                project_dir=str(self.output_dir), logging_dir=str(self.output_dir / args.logging_dir)
            ),
            dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=args.seed),
            cpu=args.cpu or multi_process_without_gpu,  # Accelerate picks gloo for several CPU processes
        )
        logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
        logging.getLogger("accelerate").setLevel(logging.WARNING)  # one line per checkpoint file is too chatty
        if not accelerator.is_main_process:
            logging.getLogger("genzoo").setLevel(logging.WARNING)
        set_seed(args.seed)  # model initialisation: identical on every process

        # Data
        self.data = load_training_data(args)
        logger.info("data: %s", self.data.describe())
        self.dataloader = torch.utils.data.DataLoader(
            self.data.dataset,
            batch_size=args.train_batch_size,
            shuffle=True,
            drop_last=True,
            num_workers=args.dataloader_num_workers,
        )
        if len(self.dataloader) == 0:
            raise TrainingError(
                f"The data set has {len(self.data.dataset)} samples, fewer than one batch of --train_batch_size "
                f"{args.train_batch_size}; lower the batch size."
            )

        # Method and models
        self.method = registry.get("method", args.method)(args, self.data)
        self.method.check_conditioning()
        self.method.check_data()
        self.raw = self.method.build_models()  # name -> plain module; what EMA, samples and the pipeline use
        self.model_names = list(self.raw)
        groups = self.method.optimizer_groups()
        owners = [name for names in groups.values() for name in names]
        if sorted(owners) != sorted(self.model_names):
            raise TrainingError(
                f"Method {args.method!r}: every model must belong to exactly one optimizer group; models "
                f"{self.model_names}, groups {groups}."
            )
        self.groups = groups

        # Optimisers and learning-rate schedules, one per group; schedules count optimiser updates.
        if args.max_train_steps is None:
            batches_per_process = len(self.dataloader) // accelerator.num_processes
            args.max_train_steps = args.num_epochs * max(1, batches_per_process // args.gradient_accumulation_steps)
        optimizers, self.lr_schedulers = {}, {}
        for group, names in groups.items():
            options = dict(
                lr=args.learning_rate,
                betas=(args.adam_beta1, args.adam_beta2),
                weight_decay=args.adam_weight_decay,
                eps=args.adam_epsilon,
            )
            options.update(self.method.optimizer_kwargs(group))
            params = [p for name in names for p in self.raw[name].parameters()]
            optimizers[group] = torch.optim.AdamW(params, **options)
            self.lr_schedulers[group] = get_scheduler(
                args.lr_scheduler,
                optimizer=optimizers[group],
                num_warmup_steps=args.lr_warmup_steps,
                num_training_steps=args.max_train_steps,
            )

        phase_modules = {g: PhaseModule(self.method, g, {n: self.raw[n] for n in names}) for g, names in groups.items()}
        prepared = accelerator.prepare(*phase_modules.values(), *optimizers.values(), self.dataloader)
        self.phase_modules = dict(zip(phase_modules, prepared[: len(groups)]))
        self.optimizers = dict(zip(optimizers, prepared[len(groups) : 2 * len(groups)]))
        self.dataloader = prepared[-1]
        for scheduler in self.lr_schedulers.values():
            accelerator.register_for_checkpointing(scheduler)

        # EMA of the models the method names; saved and restored through Accelerate's state hooks.
        self.emas = {}
        if args.use_ema:
            for name in self.method.ema_models():
                model = self.raw[name]
                ema = EMAModel(
                    model.parameters(),
                    decay=args.ema_max_decay,
                    use_ema_warmup=True,
                    inv_gamma=args.ema_inv_gamma,
                    power=args.ema_power,
                )
                ema.to(accelerator.device)
                self.emas[name] = ema
        accelerator.register_save_state_pre_hook(self._save_hook)
        accelerator.register_load_state_pre_hook(self._load_hook)

        # The trainer's own randomness (noise, timesteps, latents): one generator per process, checkpointed.
        self.generator = torch.Generator(device="cpu").manual_seed(args.seed * 1000 + accelerator.process_index)
        self.global_step = 0

        if accelerator.is_main_process:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            write_recipe(args, self.output_dir / RECIPE)
            tracker_config = {k: v for k, v in vars(args).items() if isinstance(v, (int, float, str, bool))}
            accelerator.init_trackers("genzoo", config=tracker_config)

    # -------------------------------------------------------------------------------------------- state hooks
    def _save_hook(self, models, weights, output_dir):
        rank = self.accelerator.process_index
        state = self.generator.get_state()
        save_file({"generator": state}, os.path.join(output_dir, f"trainer_rng_{rank}.safetensors"))
        if self.accelerator.is_main_process:
            for name, ema in self.emas.items():
                save_ema(ema, os.path.join(output_dir, f"{name}_ema"))

    def _load_hook(self, models, input_dir):
        rank = self.accelerator.process_index
        path = os.path.join(input_dir, f"trainer_rng_{rank}.safetensors")
        if not os.path.isfile(path):
            raise TrainingError(
                f"{input_dir} has no generator state for process {rank}: it was written by a run with fewer "
                "processes. Resume with the same number of processes."
            )
        self.generator.set_state(load_file(path)["generator"])
        for name, ema in self.emas.items():
            load_ema(ema, os.path.join(input_dir, f"{name}_ema"))
            ema.to(self.accelerator.device)

    def save_checkpoint(self):
        accelerator, step = self.accelerator, self.global_step
        final = checkpoint_dir(self.output_dir, step)
        partial = final.with_name(final.name + PARTIAL)
        if accelerator.is_main_process:
            shutil.rmtree(partial, ignore_errors=True)
        accelerator.wait_for_everyone()
        accelerator.save_state(str(partial))
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            state = {"global_step": step, "method": self.args.method, "num_processes": accelerator.num_processes}
            (partial / TRAINER_STATE).write_text(json.dumps(state, indent=2) + "\n")
            shutil.rmtree(final, ignore_errors=True)
            os.replace(partial, final)  # atomic: a checkpoint is either complete or absent
            self._prune_checkpoints()
            logger.info("saved checkpoint %s", final)
        accelerator.wait_for_everyone()

    def _prune_checkpoints(self):
        limit = self.args.checkpoints_total_limit
        root = self.output_dir / CHECKPOINTS
        for stale in root.glob(f"*{PARTIAL}"):
            shutil.rmtree(stale, ignore_errors=True)
        if limit is not None:
            for old in list_checkpoints(self.output_dir)[:-limit]:
                shutil.rmtree(old, ignore_errors=True)

    def load_checkpoint(self, path: Path):
        state = json.loads((path / TRAINER_STATE).read_text())
        if state.get("method") != self.args.method:
            raise TrainingError(f"{path} is a checkpoint of method {state.get('method')!r}, not {self.args.method!r}.")
        self.accelerator.load_state(str(path))
        self.global_step = int(state["global_step"])
        logger.info("resumed from %s at step %d", path, self.global_step)

    # -------------------------------------------------------------------------------------------- one update
    def _update(self, batches):
        """One optimiser update of every phase of this step, accumulating gradients over ``batches``."""
        args, accelerator = self.args, self.accelerator
        terms_sum: dict[str, float] = {}
        for phase in self.method.phases(self.global_step):
            own = set(self.groups[phase])
            for name, model in self.raw.items():  # gradients never leak into another group's models
                model.requires_grad_(name in own)
            frozen = {name: model for name, model in self.raw.items() if name not in own}
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
            if args.max_grad_norm > 0:
                accelerator.unscale_gradients(optimizer=optimizer)
                params = [p for name in self.groups[phase] for p in self.raw[name].parameters()]
                torch.nn.utils.clip_grad_norm_(params, args.max_grad_norm)
            optimizer.step()
            self.lr_schedulers[phase].step()
            optimizer.zero_grad(set_to_none=True)
            for name in self.groups[phase]:
                if name in self.emas:
                    self.emas[name].step(self.raw[name].parameters())
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
    @contextlib.contextmanager
    def ema_weights(self):
        """Swap the EMA weights into the models (for samples and the saved pipeline), then swap them back."""
        for name, ema in self.emas.items():
            params = list(self.raw[name].parameters())
            ema.store(params)
            ema.copy_to(params)
        try:
            yield
        finally:
            for name, ema in self.emas.items():
                ema.restore(list(self.raw[name].parameters()))

    def pipeline(self):
        return self.method.make_pipeline({name: self.raw[name] for name in self.model_names})

    def sample(self, num: int):
        """``num`` samples from the current (EMA) models with a fixed seed, as a numpy array."""
        args = self.args
        with self.ema_weights():
            pipe = self.pipeline()
            pipe.set_progress_bar_config(disable=True)
            out = pipe(
                batch_size=num,
                generator=torch.Generator(device=self.accelerator.device).manual_seed(args.seed),
                num_inference_steps=args.num_inference_steps,
                output_type="np",
                **self.method.sample_kwargs(num),
            )
        return out.images if hasattr(out, "images") else out.samples

    def save_sample_grid(self, path: Path, title: str):
        samples = self.sample(self.args.num_sample_images)
        save_samples(samples, path, title=title)
        return path

    def log_sample_grid(self):
        path = self.save_sample_grid(
            self.output_dir / "samples" / f"step-{self.global_step:06d}.png",
            f"{self.args.method} on {self.data.name}, step {self.global_step}",
        )
        image = np.asarray(PIL.Image.open(path).convert("RGB"))
        for tracker in self.accelerator.trackers:
            if tracker.name == "tensorboard":
                tracker.log_images({"samples": image[None]}, step=self.global_step, dataformats="NHWC")
            elif tracker.name == "wandb":
                tracker.log_images({"samples": [image]}, step=self.global_step)

    # -------------------------------------------------------------------------------------------- the loop
    def run(self) -> TrainResult:
        self.wall_start = time.perf_counter()
        self.setup()
        args, accelerator = self.args, self.accelerator
        resume = resolve_resume(self.output_dir, args.resume_from_checkpoint)
        if resume is not None:
            self.load_checkpoint(resume)

        # Each epoch makes len(dataloader) // accumulation updates (a last partial group of batches is dropped), so
        # the step count alone says where in the data a resumed run continues.
        accumulation = args.gradient_accumulation_steps
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
            args.method, self.data.name, args.max_train_steps, args.train_batch_size, accumulation,
            accelerator.num_processes, args.mixed_precision,
        )
        progress = tqdm(
            total=args.max_train_steps, initial=self.global_step, desc="steps", disable=not accelerator.is_local_main_process
        )
        recent: list[dict] = []
        start = time.perf_counter()
        start_step = self.global_step
        for module in self.phase_modules.values():
            module.train()
        while self.global_step < args.max_train_steps:
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
                if self.global_step % args.checkpointing_steps == 0 or self.global_step == args.max_train_steps:
                    self.save_checkpoint()
                if accelerator.is_main_process and (
                    self.global_step % args.save_images_steps == 0 or self.global_step == args.max_train_steps
                ):
                    self.log_sample_grid()
                if self.global_step >= args.max_train_steps:
                    break
            epoch += 1
        progress.close()
        elapsed = time.perf_counter() - start
        accelerator.wait_for_everyone()
        metrics = self.finish(recent, elapsed, self.global_step - start_step)
        accelerator.end_training()
        return TrainResult(self.output_dir, self.global_step, metrics)

    def finish(self, recent, elapsed, steps_this_run):
        """Save the pipeline (EMA weights), samples.png and metrics.json; push if asked."""
        args, accelerator = self.args, self.accelerator
        metrics = {}
        if accelerator.is_main_process:
            with self.ema_weights():
                pipe = self.pipeline()
                pipe.save_pretrained(self.output_dir)
            self.save_sample_grid(self.output_dir / "samples.png", f"{args.method} on {self.data.name}")
            keys = sorted({k for terms in recent for k in terms})
            metrics = {
                "method": args.method,
                "dataset": self.data.name,
                "data": self.data.describe(),
                "global_step": self.global_step,
                "train_batch_size": args.train_batch_size,
                "gradient_accumulation_steps": args.gradient_accumulation_steps,
                "num_processes": accelerator.num_processes,
                "mixed_precision": args.mixed_precision,
                "use_ema": bool(self.emas),
                "seed": args.seed,
                "train_seconds_this_run": round(elapsed, 2),
                "wall_seconds_this_run": None,  # filled in below, once the pipeline and samples are saved
                "machine": describe_machine(accelerator.device),
                "steps_per_second": round(steps_this_run / elapsed, 3) if elapsed > 0 else None,
                "final_losses": {k: float(np.mean([t[k] for t in recent if k in t])) for k in keys},
                "parameters": {n: sum(p.numel() for p in self.raw[n].parameters()) for n in self.model_names},
                **peak_memory(accelerator.device),
                **self.method.describe(),
            }
            metrics["wall_seconds_this_run"] = round(time.perf_counter() - self.wall_start, 1)
            (self.output_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
            logger.info("saved the %s pipeline, samples.png and metrics.json to %s", type(pipe).__name__, self.output_dir)
            if args.push_to_hub:
                from ..hub import push_folder

                repo_id = args.hub_model_id or self.output_dir.name
                url = push_folder(self.output_dir, repo_id, token=args.hub_token, private=args.hub_private_repo or None)
                logger.info("pushed to the Hub as %s: %s", repo_id, url)
        accelerator.wait_for_everyone()
        return metrics


def reset_accelerate_state() -> None:
    """Forget Accelerate's process-wide settings (mixed precision, gradient state), which otherwise refuse to change,
    so that another run in this process (tests, notebooks, docs, the benchmark) may choose its own. The distributed
    set-up (PartialState) is kept. Accelerate's own tests reset state the same way."""
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state()
    GradientState._reset_state()


def train(args) -> TrainResult:
    """Train from a parsed namespace (see :func:`genzoo.training.parse_args`)."""
    try:
        return Trainer(finish_args(args)).run()
    finally:
        reset_accelerate_state()


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``train/train.py`` and ``python -m genzoo.training`` (what ``accelerate launch`` runs).

    Bad options and bad data end as one ``error:`` line and exit status 2; a run stopped by a non-finite loss or an
    unusable checkpoint exits with 1.
    """
    import sys

    try:
        train(parse_args(argv, prog="train.py"))
    except (TrainingError, ValueError, OSError, KeyError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        print(f"train.py: error: {' '.join(str(message).split())}", file=sys.stderr)
        return 1 if isinstance(exc, TrainingError) else 2
    return 0

"""The trainer's options: Diffusers' ``train_unconditional.py`` names where the meaning is the same, a YAML recipe
(``--config``) that can hold every option, and the chosen method's own options.

Precedence, lowest first: the option's default, the method's preferred defaults (``Method.trainer_defaults``),
the recipe, the command line.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from .. import registry
from ..conditioning import CONDITIONINGS
from ..data import add_data_arguments
from ..methods.base import bool_arg

DEFAULT_METHOD = "flow-matching"
MIXED_PRECISION = ("no", "fp16", "bf16")
LOGGERS = ("tensorboard", "wandb", "none")
LR_SCHEDULERS = ("linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup")


class RecipeError(ValueError):
    """A bad option: a recipe file that cannot be read or names options the trainer does not know, or a command-line
    value argparse rejects (raised instead of printing the usage block, so every caller reports one line)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise RecipeError(f"{message} (see `{self.prog} --help`)")


def add_trainer_arguments(parser: argparse.ArgumentParser) -> None:
    """Options shared by every method."""
    g = parser.add_argument_group("run")
    g.add_argument("--method", default=DEFAULT_METHOD, help=f"training method (default {DEFAULT_METHOD}); "
                   "`genzoo list --kind method` shows all")
    g.add_argument("--config", help="YAML recipe holding any of these options; the command line overrides it")
    g.add_argument("--output_dir", default=None, help="where the pipeline, samples, logs and checkpoints go "
                   "(default runs/<method>-<dataset>)")
    g.add_argument("--seed", type=int, default=0, help="seeds models, noise and data order (default 0)")
    g.add_argument("--cpu", action="store_true", help="train on the CPU even if a GPU is present")

    g = parser.add_argument_group("optimisation")
    g.add_argument("--train_batch_size", type=int, default=128, help="batch size per process (default 128)")
    g.add_argument("--num_epochs", type=int, default=None, help="passes over the data (used if max_train_steps unset)")
    g.add_argument("--max_train_steps", type=int, default=None, help="optimiser updates in total (default 2000 "
                   "when neither this nor --num_epochs is given)")
    g.add_argument("--gradient_accumulation_steps", type=int, default=1)
    g.add_argument("--learning_rate", type=float, default=1e-4)
    g.add_argument("--lr_scheduler", default="cosine", choices=LR_SCHEDULERS)
    g.add_argument("--lr_warmup_steps", type=int, default=100, help="warm-up, in optimiser updates (default 100)")
    g.add_argument("--adam_beta1", type=float, default=0.9)
    g.add_argument("--adam_beta2", type=float, default=0.999)
    g.add_argument("--adam_weight_decay", type=float, default=0.0)
    g.add_argument("--adam_epsilon", type=float, default=1e-8)
    g.add_argument("--max_grad_norm", type=float, default=1.0, help="gradient clipping; 0 turns it off")
    g.add_argument("--mixed_precision", default="no", choices=MIXED_PRECISION)
    g.add_argument("--use_ema", type=bool_arg, nargs="?", const=True, default=False,
                   help="keep an EMA of the weights for samples and the saved pipeline")
    g.add_argument("--ema_inv_gamma", type=float, default=1.0)
    g.add_argument("--ema_power", type=float, default=0.75)
    g.add_argument("--ema_max_decay", type=float, default=0.9999)
    g.add_argument("--dataloader_num_workers", type=int, default=0)

    g = parser.add_argument_group("checkpoints, logs and samples")
    g.add_argument("--checkpointing_steps", type=int, default=500)
    g.add_argument("--checkpoints_total_limit", type=int, default=None, help="keep at most this many checkpoints")
    g.add_argument("--resume_from_checkpoint", default=None, help="'latest' or a checkpoint folder")
    g.add_argument("--logger", default="tensorboard", choices=LOGGERS)
    g.add_argument("--logging_dir", default="logs", help="relative to output_dir (default logs)")
    g.add_argument("--save_images_steps", type=int, default=500, help="a sample grid every this many steps")
    g.add_argument("--num_sample_images", type=int, default=64, help="samples in each grid (default 64)")
    g.add_argument("--num_inference_steps", type=int, default=None,
                   help="sampling steps for grids and samples.png (default: the pipeline's)")

    g = parser.add_argument_group("conditioning")
    g.add_argument("--conditioning", default="none", choices=CONDITIONINGS,
                   help="none (default): unconditional; class: on the data's labels (--label_column); text: on "
                   "captions (--caption_column; DDPM and flow matching on images)")
    g.add_argument("--cond_dropout", type=float, default=0.1,
                   help="DDPM / flow matching: probability of training on the null label or the empty prompt, "
                   "which classifier-free guidance needs (default 0.1)")

    g = parser.add_argument_group("hub")
    g.add_argument("--push_to_hub", action="store_true")
    g.add_argument("--hub_model_id", default=None)
    g.add_argument("--hub_token", default=None)
    g.add_argument("--hub_private_repo", action="store_true")

    add_data_arguments(parser)


def load_recipe(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"--config {path}: no such file.")
    try:
        recipe = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise RecipeError(f"--config {path} is not valid YAML: {' '.join(str(exc).split())}") from None
    if not isinstance(recipe, dict):
        raise RecipeError(f"--config {path} must hold a mapping of option names to values, got {type(recipe).__name__}.")
    return {str(key).replace("-", "_"): value for key, value in recipe.items()}


def build_parser(method_name: str = DEFAULT_METHOD, prog: str = "genzoo train") -> argparse.ArgumentParser:
    """The full parser for one method: trainer options, data options and the method's own."""
    parser = _Parser(prog=prog, description="Train a GAN, VAE, DDPM or flow-matching model.")
    add_trainer_arguments(parser)
    method_cls = registry.get("method", method_name)
    method_cls.add_arguments(parser)
    parser.set_defaults(**method_cls.trainer_defaults)
    return parser


def parse_args(argv: list[str] | None = None, prog: str = "genzoo train") -> argparse.Namespace:
    """Parse the command line (and the recipe it names) into one namespace; unknown recipe keys are an error."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config")
    pre.add_argument("--method")
    known, _ = pre.parse_known_args(argv)
    recipe = load_recipe(known.config) if known.config else {}
    method_name = known.method or recipe.get("method") or DEFAULT_METHOD
    try:
        parser = build_parser(method_name, prog=prog)
    except KeyError as exc:
        raise RecipeError(exc.args[0]) from None
    options = {action.dest for action in parser._actions}
    unknown = sorted(set(recipe) - options)
    if unknown:
        raise RecipeError(
            f"--config {known.config}: unknown option(s) {', '.join(unknown)} for method {method_name!r}. "
            f"Known options: {', '.join(sorted(options - {'help'}))}."
        )
    parser.set_defaults(**recipe)
    args = parser.parse_args(argv)
    return finish_args(args)


def finish_args(args: argparse.Namespace) -> argparse.Namespace:
    """Checks and derived defaults that need several options at once."""
    for name in ("train_batch_size", "gradient_accumulation_steps", "checkpointing_steps", "save_images_steps",
                 "num_sample_images"):
        value = getattr(args, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise RecipeError(f"--{name} must be a positive integer, got {value!r}.")
    for name in ("max_train_steps", "num_epochs", "num_inference_steps", "checkpoints_total_limit"):
        value = getattr(args, name)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise RecipeError(f"--{name} must be a positive integer, got {value!r}.")
    if not 0.0 <= args.cond_dropout < 1.0:
        raise RecipeError(f"--cond_dropout must be in [0, 1), got {args.cond_dropout!r}.")
    if args.conditioning not in CONDITIONINGS:
        raise RecipeError(f"--conditioning {args.conditioning!r}: allowed {', '.join(CONDITIONINGS)}.")
    if args.mixed_precision not in MIXED_PRECISION:
        raise RecipeError(f"--mixed_precision {args.mixed_precision!r}: allowed {', '.join(MIXED_PRECISION)}.")
    if args.logger not in LOGGERS:
        raise RecipeError(f"--logger {args.logger!r}: allowed {', '.join(LOGGERS)}.")
    if args.max_train_steps is None and args.num_epochs is None:
        args.max_train_steps = 2000
    if args.output_dir is None:
        dataset = Path(str(args.dataset_name or args.train_data_dir or args.dataset)).name or "data"
        args.output_dir = str(Path("runs") / f"{args.method}-{dataset}")
    return args

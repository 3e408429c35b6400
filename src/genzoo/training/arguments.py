"""The trainer's options: Diffusers' ``train_unconditional.py`` names where the meaning is the same, a YAML recipe
(``--config``) that can hold every option, the data options, and the chosen method's own typed options.

A recipe is one flat mapping of option names to values (what ``--config`` reads and a run writes as ``recipe.yaml``);
the trainer reads its part as a :class:`TrainerConfig` and the method its part as its own ``Method.Config``, both
checked by :mod:`genzoo.config`. Precedence, lowest first: the option's default, the method's preferred defaults
(``Method.trainer_defaults``), the recipe, the command line.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import yaml

from .. import registry
from ..checks import is_int
from ..config import Options, RecipeError, finite_float, option
from ..data import add_data_arguments
from ..files import atomic_write_text
from ..secrets import SECRET_OPTIONS, redact, secret_values

DEFAULT_METHOD = "flow-matching"
#: Options that describe this invocation rather than the model: left out of the recipe a run writes.
NOT_IN_RECIPE = ("config", "resume_from_checkpoint", "overwrite_output_dir", "push_to_hub", "hub_model_id",
                 "hub_private_repo", *SECRET_OPTIONS)  # a secret (hub_token) is never written
#: Options a resumed run may change: how long it trains and how it checkpoints, logs and samples along the way.
#: Any other difference from the checkpoint's recipe changes the model or the data, and the resume is refused.
RESUME_MAY_CHANGE = (
    "output_dir", "max_train_steps", "num_epochs", "checkpointing_steps", "checkpoints_total_limit", "logger",
    "logging_dir", "save_images_steps", "num_sample_images", "num_inference_steps", "dataloader_num_workers",
    "checkpoint_on_signal",
)
MIXED_PRECISION = ("no", "fp16", "bf16")
LOGGERS = ("tensorboard", "wandb", "none")
LR_SCHEDULERS = ("linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup")

RUN, OPTIM, CHECKPOINTS, HUB = "run", "optimisation", "checkpoints, logs and samples", "hub"


@dataclass
class TrainerConfig(Options):
    """Every option of the trainer itself (the data and the method have their own).

    One field per option, with its default, help and allowed values; the fields and their defaults are listed on
    the trainer options page (``genzoo.training.options_markdown``) and by ``genzoo train --help``. Build it from a
    parsed namespace or a recipe with ``TrainerConfig.from_mapping``, which checks every value.

    Raises:
        RecipeError: for a value that is not allowed.
    """

    method: str = option(DEFAULT_METHOD, f"training method (default {DEFAULT_METHOD}); `genzoo list --kind method` "
                         "shows all", group=RUN)
    config: str | None = option(None, "YAML recipe holding any of these options; the command line overrides it",
                                group=RUN)
    output_dir: str | None = option(None, "where the pipeline, samples, logs and checkpoints go (default "
                                    "runs/<method>-<dataset>)", group=RUN)
    overwrite_output_dir: bool = option(False, "replace the run already in --output_dir (its pipeline is kept until "
                                        "the new one is saved; its checkpoints, samples and logs go now)", group=RUN)
    seed: int = option(0, "seeds models, noise and data order", minimum=0, group=RUN)
    cpu: bool = option(False, "train on the CPU even if a GPU is present", group=RUN)

    train_batch_size: int = option(128, "batch size per process", minimum=1, group=OPTIM)
    num_epochs: int | None = option(None, "passes over the data (used if max_train_steps is unset)", minimum=1,
                                    group=OPTIM)
    max_train_steps: int | None = option(None, "optimiser updates in total (2000 when neither this nor --num_epochs "
                                         "is given)", minimum=1, group=OPTIM)
    gradient_accumulation_steps: int = option(1, "batches per optimiser update", minimum=1, group=OPTIM)
    learning_rate: float = option(1e-4, "AdamW learning rate", minimum=0.0, maximum=1e6, group=OPTIM)
    lr_scheduler: str = option("cosine", "learning-rate schedule (Diffusers' get_scheduler)", choices=LR_SCHEDULERS,
                               group=OPTIM)
    lr_warmup_steps: int = option(100, "warm-up, in optimiser updates", minimum=0, group=OPTIM)
    adam_beta1: float = option(0.9, "AdamW beta1", minimum=0.0, below=1.0, group=OPTIM)
    adam_beta2: float = option(0.999, "AdamW beta2", minimum=0.0, below=1.0, group=OPTIM)
    adam_weight_decay: float = option(0.0, "AdamW weight decay", minimum=0.0, group=OPTIM)
    adam_epsilon: float = option(1e-8, "AdamW epsilon", above=0.0, group=OPTIM)
    max_grad_norm: float = option(1.0, "gradient clipping; 0 turns it off", minimum=0.0, group=OPTIM)
    mixed_precision: str = option("no", "autocast precision", choices=MIXED_PRECISION, group=OPTIM)
    use_ema: bool = option(False, "keep an EMA of the weights for samples and the saved pipeline", group=OPTIM)
    ema_inv_gamma: float = option(1.0, "EMA warm-up: decay = 1 - (1 + step / inv_gamma) ** -power", above=0.0,
                                  group=OPTIM)
    ema_power: float = option(0.75, "EMA warm-up power", above=0.0, group=OPTIM)
    ema_max_decay: float = option(0.9999, "EMA decay once warmed up", minimum=0.0, maximum=1.0, group=OPTIM)
    dataloader_num_workers: int = option(0, "DataLoader worker processes", minimum=0, group=OPTIM)

    checkpointing_steps: int = option(500, "a checkpoint every this many steps", minimum=1, group=CHECKPOINTS)
    checkpoints_total_limit: int | None = option(None, "keep at most this many checkpoints", minimum=1,
                                                 group=CHECKPOINTS)
    resume_from_checkpoint: str | None = option(None, "'latest' or a checkpoint folder", group=CHECKPOINTS)
    init_from: str | None = option(None, "start from a saved pipeline's weights (folder or Hub id): each of its "
                                   "components named like one of the method's models (unet, generator, ...) and "
                                   "built by this recipe's configuration; a fine-tune, e.g. of a one-call pipeline "
                                   "with --gan_weight", metavar="PIPELINE", group=CHECKPOINTS)
    checkpoint_on_signal: bool = option(False, "on SIGTERM or SIGINT, save a checkpoint of the step the run stops at "
                                        "before exiting (preemptible clusters); without it the run stops at the end "
                                        "of its step, keeping the checkpoints it has", group=CHECKPOINTS)
    logger: str = option("tensorboard", "where losses and sample grids are logged", choices=LOGGERS,
                         group=CHECKPOINTS)
    logging_dir: str = option("logs", "relative to output_dir", group=CHECKPOINTS)
    save_images_steps: int = option(500, "a sample grid every this many steps", minimum=1, group=CHECKPOINTS)
    num_sample_images: int = option(64, "samples in each grid", minimum=1, group=CHECKPOINTS)
    num_inference_steps: int | None = option(None, "sampling steps for grids and samples.png (default: the "
                                             "pipeline's)", minimum=1, group=CHECKPOINTS)

    push_to_hub: bool = option(False, "upload the pipeline and its model card when training ends", group=HUB)
    hub_model_id: str | None = option(None, "the repo to push to (default: the output folder's name)", group=HUB)
    hub_token: str | None = option(None, "Hub token (default: the logged-in user's)", group=HUB)
    hub_private_repo: bool = option(False, "create the repo private", group=HUB)


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise RecipeError(f"{message} (see `{self.prog} --help`)")


def load_recipe(path: str | Path) -> dict:
    """Read a YAML recipe (what ``--config`` takes, what a run writes as ``recipe.yaml``).

    Args:
        path: the recipe file.

    Returns:
        Its mapping of option names to values (``-`` in names read as ``_``).

    Raises:
        RecipeError: a missing file, invalid YAML, or YAML that is not a mapping.
    """
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


def method_class(name: str):
    """The registered method ``name``; an unknown name is a :class:`RecipeError` listing the known ones."""
    try:
        return registry.get("method", name)
    except KeyError as exc:
        raise RecipeError(exc.args[0]) from None


def build_parser(method_name: str = DEFAULT_METHOD, prog: str = "genzoo train") -> argparse.ArgumentParser:
    """The full parser for one method: trainer options, data options and the method's own (from its ``Config``).

    Args:
        method_name: the ``--method`` whose options (and preferred trainer defaults) the parser has.
        prog: the program name in messages and ``--help``.

    Returns:
        The parser; its errors are ``RecipeError``s rather than a usage block and exit.

    Raises:
        RecipeError: for an unknown method.
    """
    parser = _Parser(prog=prog, description=f"Train a model by one of the registered methods "
                                            f"({', '.join(registry.names('method'))}): here --method {method_name}.")
    TrainerConfig.add_arguments(parser)
    add_data_arguments(parser)
    cls = method_class(method_name)
    cls.Config.add_arguments(parser)
    for action in parser._actions:  # plain float options too: nan and inf pass every range check unnoticed
        if action.type is float:
            action.type = finite_float
    parser.set_defaults(**cls.trainer_defaults)
    return parser


def parse_args(argv: list[str] | None = None, prog: str = "genzoo train") -> argparse.Namespace:
    """Parse the command line (and the recipe it names) into one flat namespace, the run's recipe.

    Precedence, lowest first: each option's default, the method's preferred defaults, the recipe (``--config``),
    the command line.

    Args:
        argv: the command line without the program name (default: ``sys.argv[1:]``).
        prog: the program name in messages.

    Returns:
        Every option, checked, with the defaults that depend on several options filled in
        (``max_train_steps``, ``output_dir``).

    Raises:
        RecipeError: unknown recipe keys, and values that are not allowed (one line naming the option).
    """
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config")
    pre.add_argument("--method")
    known, _ = pre.parse_known_args(argv)
    recipe = load_recipe(known.config) if known.config else {}
    method_name = known.method or recipe.get("method") or DEFAULT_METHOD
    parser = build_parser(method_name, prog=prog)
    options = {action.dest for action in parser._actions}
    unknown = sorted(set(recipe) - options)
    if unknown:
        raise RecipeError(
            f"--config {known.config}: unknown option(s) {', '.join(unknown)} for method {method_name!r}. "
            f"Known options: {', '.join(sorted(options - {'help'}))}."
        )
    typed = {f.name for cls in (TrainerConfig, method_class(method_name).Config) for f in dataclasses.fields(cls)}
    parser.set_defaults(**{key: value if key in typed else recipe_value(parser, key, value, known.config)
                           for key, value in recipe.items()})
    return finish_args(parser.parse_args(argv))


def recipe_value(parser: argparse.ArgumentParser, key: str, value, source):
    """A recipe's ``value`` for a plain argparse option ``key`` (the data options), given the checks the command
    line gives the same option (its ``type`` and ``choices``), which argparse never applies to defaults. Typed
    options (:mod:`genzoo.config`) are checked by their own classes when the recipe is finished."""
    action = next(a for a in parser._actions if a.dest == key)
    where = f"--config {source}: {key}"
    if value is None:
        return None
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
        if not isinstance(value, bool):
            raise RecipeError(f"{where} must be true or false, got {value!r}.")
        return value
    kind = float if action.type is finite_float else action.type
    if kind in (int, float):
        if isinstance(value, str):
            try:
                value = kind(value)
            except ValueError:
                raise RecipeError(f"{where} must be {'an integer' if kind is int else 'a number'}, got {value!r}.") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and not is_int(value)):
            raise RecipeError(f"{where} must be {'an integer' if kind is int else 'a number'}, got {value!r}.")
        if not math.isfinite(value):
            raise RecipeError(f"{where} must be a finite number, got {value!r}.")
        value = kind(value)
    elif kind is not None:
        try:
            value = kind(value)
        except (argparse.ArgumentTypeError, ValueError, TypeError) as exc:
            raise RecipeError(f"{where}: {' '.join(str(exc).split())}.") from None
    elif not isinstance(value, str):
        raise RecipeError(f"{where} must be a string, got {value!r}.")
    if action.choices is not None and value not in action.choices:
        raise RecipeError(f"{where} {value!r}: allowed {', '.join(map(str, action.choices))}.")
    return value


def finish_args(args: argparse.Namespace) -> argparse.Namespace:
    """Check every value (the trainer's and the method's typed options) and fill in the defaults that depend on
    several options."""
    TrainerConfig.from_mapping(args)
    method_class(args.method).Config.from_mapping(args)
    if args.max_train_steps is None and args.num_epochs is None:
        args.max_train_steps = 2000
    if args.output_dir is None:
        dataset = Path(str(args.dataset_name or args.train_data_dir or args.dataset)).name or "data"
        args.output_dir = str(Path("runs") / f"{args.method}-{dataset}")
    return args


def recipe_of(args) -> dict:
    """The run's recipe: every option except those that describe only this invocation (:data:`NOT_IN_RECIPE`)."""
    items = vars(args).items() if isinstance(args, argparse.Namespace) else dict(args).items()
    return {k: v for k, v in sorted(items) if k not in NOT_IN_RECIPE}


def recipe_text(args) -> str:
    """The recipe as YAML that ``--config`` accepts: training it again reproduces the run. It holds no secret: the
    secret options are not options of the model (:data:`NOT_IN_RECIPE`), and a secret in play pasted into another
    option's value is masked (:func:`genzoo.secrets.redact`)."""
    return (
        "# The options of the genzoo training run that wrote this folder. Reproduce it with\n"
        "#   genzoo train --config recipe.yaml\n" + yaml.safe_dump(redact(recipe_of(args), secret_values(args)),
                                                                sort_keys=True)
    )


def write_recipe(args: argparse.Namespace, path: Path) -> None:
    atomic_write_text(path, recipe_text(args))


def read_saved_recipe(path: Path) -> dict:
    """A ``recipe.yaml`` a run wrote; a file that is not a YAML mapping is a :class:`RecipeError` naming it."""
    try:
        recipe = yaml.safe_load(Path(path).read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise RecipeError(f"{path} cannot be read as a recipe: {' '.join(str(exc).split())}") from None
    if not isinstance(recipe, dict):
        raise RecipeError(f"{path} does not hold a mapping of option names to values.")
    return recipe


def recipe_differences(saved: dict, current) -> dict[str, tuple]:
    """``{option: (saved value, current value)}`` for the options that differ and that a resume may not change
    (everything but :data:`RESUME_MAY_CHANGE` and :data:`NOT_IN_RECIPE`)."""
    now = recipe_of(current)
    keys = (set(saved) | set(now)) - set(RESUME_MAY_CHANGE) - set(NOT_IN_RECIPE)
    return {k: (saved.get(k), now.get(k)) for k in sorted(keys) if saved.get(k) != now.get(k)}

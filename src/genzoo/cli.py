"""The `genzoo` command line: train, sample and evaluate a saved pipeline, push it to the Hub, list what is registered.

Each subcommand is one ``add_<command>_command(subparsers)`` function that declares its arguments and one
``run_<command>(args) -> int`` function that does the work; ``main`` only parses and dispatches. Mistakes a user can
fix (a bad argument, a path or repo that does not resolve, a bad output name) end as one line on stderr,
``genzoo: error: ...``, and exit status 2 -- never a traceback.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from . import __version__, registry
from .checks import error_line

# torch, Diffusers and the pipelines are imported inside the commands that sample or train, so that `genzoo --help`,
# `genzoo list` and a mistyped argument answer at once (benchmarks/cli_start.py measures it).

#: Errors reported as ``genzoo: error: <message>`` (exit status 2): missing or unreadable pipelines
#: (``PipelineLoadError`` is an ``OSError``), bad values, unknown registry names, missing plugins or packages.
USER_ERRORS = (OSError, ValueError, KeyError, ImportError, TypeError)
EXIT_USAGE = 2
DTYPES = ("float32", "bfloat16", "float16")
OUTPUT_SUFFIXES = (".png", ".npy")


class CLIError(Exception):
    """A mistake on the command line; ``main`` prints it as one ``genzoo: error:`` line."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake raises :class:`CLIError` (one line, same format as every other error) instead
    of printing the usage block and exiting."""

    def error(self, message):
        raise CLIError(f"{message} (see `{self.prog} --help`)")


# ---------------------------------------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="genzoo", description="GANs, VAEs, DDPM and flow matching in Diffusers conventions.")
    parser.add_argument("--version", action="version", version=f"genzoo {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    add_train_command(subparsers)
    add_sample_command(subparsers)
    add_eval_command(subparsers)
    add_push_command(subparsers)
    add_list_command(subparsers)
    add_demo_command(subparsers)
    add_space_command(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``); returns the exit status."""
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    parser = build_parser()
    try:
        if argv and argv[0] == "train":  # the trainer parses its own options (argparse cannot forward them)
            return run_train(argv[1:])
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return 0
        return args.run(args)
    except SystemExit as exc:  # --help and --version print, then exit 0
        return int(exc.code or 0)
    except (CLIError, *USER_ERRORS) as exc:
        say(f"error: {error_line(exc)}", argv)
        return EXIT_USAGE
    except RuntimeError as exc:  # training stopped (genzoo.training.TrainingError): not a usage mistake
        if type(exc).__name__ != "TrainingError":
            raise
        say(f"error: {error_line(exc)}", argv)
        return 1
    except BaseException as exc:  # a run stopped by SIGTERM or SIGINT (genzoo.training.TrainingInterrupted)
        if type(exc).__name__ != "TrainingInterrupted":
            raise
        say(error_line(exc), argv)
        return 128 + exc.signum


def say(message: str, argv: list[str]) -> None:
    """``genzoo: <message>`` on stderr, with every secret of the command line and of this process masked."""
    from .secrets import argv_secrets, redact

    print(f"genzoo: {redact(message, argv_secrets(argv))}", file=sys.stderr)


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


MAX_SEED = 2**32 - 1  # numpy's and Accelerate's limit; torch.Generator takes any of these


def seed_int(text: str) -> int:
    """A seed: an integer from 0 to ``MAX_SEED``."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer seed, got {text!r}") from None
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"expected a seed from 0 to {MAX_SEED}, got {value}")
    return value


def guidance_float(text: str) -> float:
    """A classifier-free guidance scale: a finite number >= 0 (argparse's ``float`` would take nan and inf)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return value


def one_pass(pipe) -> bool:
    """Whether ``pipe`` samples in one pass (GAN, VAE: no scheduler, so no sampling steps)."""
    return getattr(pipe, "scheduler", None) is None


def check_steps(pipe, steps: int | None) -> None:
    """Refuse an explicit ``--steps`` for a pipeline that samples in one pass: it would be ignored, and recorded."""
    if steps is not None and one_pass(pipe):
        raise CLIError(f"--steps {steps}: {type(pipe).__name__} samples in one pass (it has no scheduler and no "
                       "sampling steps); leave --steps out.")


# ----------------------------------------------------------------------------------------------------------- train
def add_train_command(subparsers) -> None:
    # Listed for `genzoo --help`; `main` hands `genzoo train ...` straight to run_train and the trainer's parser.
    subparsers.add_parser(
        "train",
        add_help=False,
        help=f"train a model by one of the registered methods ({', '.join(registry.names('method'))}; "
        "`genzoo train --method M --help` lists every option; --num_processes N > 1 runs it under "
        "`accelerate launch`)",
    )


def accelerate_launch_command(num_processes: int, trainer_args: list[str]) -> list[str]:
    """The `accelerate launch` command line that runs the trainer in ``num_processes`` processes on this machine."""
    import os

    threads = max(1, (os.cpu_count() or 1) // num_processes)  # processes must not fight over the same cores
    return [
        sys.executable, "-m", "accelerate.commands.launch",
        "--multi_gpu", "--num_processes", str(num_processes), "--num_machines", "1",
        "--num_cpu_threads_per_process", str(threads), "--dynamo_backend", "no",
        "-m", "genzoo.training", *trainer_args,
    ]


def launch_processes(command: list[str], env: dict[str, str] | None = None) -> int:
    """Run an :func:`accelerate_launch_command` in this process, which becomes the launcher (torch's elastic agent)
    of the training processes (with ``env`` added to their environment), and return the run's exit status.

    The launcher is this process, so whatever stops it stops the run: SIGTERM or SIGINT sent to ``genzoo train``
    (``timeout``, systemd, a cluster scheduler, Ctrl-C) is passed by the agent to every training process, each of
    which stops at the end of its step (and checkpoints with ``--checkpoint_on_signal``), and the status is
    ``128 + signal``. A training process that fails ends the others; the status is that of the lowest failed rank (2
    for a refusal, which its process has already printed as one line), with no launcher traceback.
    """
    import logging

    from accelerate.commands.launch import launch_command, launch_command_parser
    from accelerate.utils import patch_environment
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    args = launch_command_parser().parse_args(command[3:])  # after `python -m accelerate.commands.launch`
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)  # the processes say what went wrong
    try:
        with patch_environment(**(env or {})):
            launch_command(args)
    except SystemExit as exc:  # the agent was stopped by a signal (its processes first): 128 + signal
        return exc.code if isinstance(exc.code, int) else 1
    except ChildFailedError as exc:
        code = exc.failures[min(exc.failures)].exitcode
        return code if code > 0 else 128 - code  # a negative code is the signal that ended the process
    return 0


def pop_option(argv: list[str], name: str) -> tuple[str | None, list[str]]:
    """The value of ``name`` in ``argv`` (``--name V`` or ``--name=V``; the last one given), and ``argv`` without
    it."""
    value, rest, i = None, [], 0
    while i < len(argv):
        arg = argv[i]
        if arg == name or arg.startswith(f"{name}="):
            value = arg.partition("=")[2] if "=" in arg else (argv[i + 1] if i + 1 < len(argv) else "")
            i += 1 if "=" in arg else 2
            continue
        rest.append(arg)
        i += 1
    return value, rest


def run_train(argv: list[str]) -> int:
    """``genzoo train [--num_processes N] TRAINER_OPTIONS``: in this process, or under `accelerate launch`."""
    value, rest = pop_option(argv, "--num_processes")
    try:
        num_processes = 1 if value is None else positive_int(value)
    except argparse.ArgumentTypeError as exc:
        raise CLIError(f"--num_processes: {exc}") from None
    if num_processes > 1:
        from .secrets import redact_argv

        # The token goes to the training processes through their environment, not their command lines (which
        # any user of the machine can list); the line printed here shows none.
        token, rest = pop_option(rest, "--hub_token")
        command = accelerate_launch_command(num_processes, rest)
        print("genzoo: running " + " ".join(redact_argv(command[1:])), file=sys.stderr)
        return launch_processes(command, env={"HF_TOKEN": token} if token else None)
    from .training import parse_args, train

    result = train(parse_args(rest))
    print(f"Trained {result.global_step} steps; pipeline, samples.png and metrics.json are in {result.output_dir}")
    return 0


# ------------------------------------------------------------------------------------------------------------ eval
def add_eval_command(subparsers) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="evaluate a pipeline offline (W2, MMD, likelihood on 2-D data; digits-FD, shapes-FD, precision, recall, "
        "prompt faithfulness on digits and shapes)",
        description="Draws seeded samples and compares them with held-out reference data; prints the metrics as "
        "JSON and writes them to --out only (PATH/eval.json, which the model card shows, only with --update-card). "
        "See docs/evaluation.md.",
    )
    parser.add_argument("pretrained", metavar="PATH_OR_REPO_ID")
    parser.add_argument("--dataset", help="reference data: a registered data set, e.g. digits, shapes or a 2-D toy "
                        "(`genzoo list --kind dataset`; default: what the model trained on, from the folder's "
                        "recipe.yaml)")
    parser.add_argument("--num-samples", type=positive_int, default=1000, help="samples drawn (default 1000)")
    parser.add_argument("--steps", type=positive_int, default=None,
                        help="num_inference_steps of DDPM and flow matching (default: the pipeline's); GANs and VAEs "
                        "sample in one pass and take none")
    parser.add_argument("--seed", type=seed_int, default=0, help="seed of the samples (default: 0)")
    parser.add_argument("--out", type=Path, default=Path("eval.json"), help="JSON file to write (default eval.json)")
    parser.add_argument("--update-card", action="store_true",
                        help="also write the figures to PATH/eval.json of the local pipeline folder, where its model "
                        "card (genzoo push) takes them from, replacing what is there")
    parser.add_argument("--likelihood-steps", type=positive_int, default=100, help="RK4 steps for flow likelihoods")
    parser.add_argument("--iwae-k", type=positive_int, default=64, help="importance samples for the VAE NLL bound")
    parser.add_argument("--guidance-scale", type=guidance_float, default=None,
                        help="conditional models: classifier-free guidance (default: the pipeline's)")
    parser.add_argument("--revision", help="Hub revision")
    parser.add_argument("--cache-dir", help="Hub cache folder")
    parser.set_defaults(run=run_eval)


def run_eval(args) -> int:
    import json

    from .files import atomic_write_text
    from .metrics.evaluate import evaluate_pipeline
    from .model_index import PipelineLoadError, folder_root, read_yaml_mapping
    from .pipelines import load_pipeline
    from .pipelines.resolve import resolve_pretrained_path

    if args.update_card and not Path(args.pretrained).is_dir():
        raise CLIError(f"--update-card writes PATH/eval.json of a local pipeline folder, and {args.pretrained} is "
                       "not one; leave --update-card out (the figures go to --out).")
    folder = resolve_pretrained_path(args.pretrained, revision=args.revision, cache_dir=args.cache_dir)
    pipe = load_pipeline(folder)
    check_steps(pipe, args.steps)
    if args.guidance_scale is not None and pipe.conditioning == "none":
        raise CLIError(f"--guidance-scale {args.guidance_scale:g}: {type(pipe).__name__} is unconditional; "
                       "classifier-free guidance needs a class- or text-conditional model.")
    try:
        recipe = read_yaml_mapping(folder / "recipe.yaml", root=folder_root(folder))
    except PipelineLoadError as exc:
        raise CLIError(f"{error_line(exc)} Fix it, or pass --dataset.") from None
    dataset = args.dataset or recipe.get("dataset")
    if not dataset:
        raise CLIError("--dataset is needed: the pipeline does not say what it was trained on (no recipe.yaml).")
    result = evaluate_pipeline(
        pipe, dataset, num_samples=args.num_samples, steps=args.steps, seed=args.seed,
        likelihood_steps=args.likelihood_steps, iwae_k=args.iwae_k, recon_loss=recipe.get("recon_loss", "mse"),
        guidance_scale=args.guidance_scale,
    )
    text = json.dumps(result, indent=2) + "\n"
    # Written beside their final names and renamed: a killed or failed write leaves the old files whole.
    atomic_write_text(args.out, text)
    if args.update_card and (folder / "eval.json").resolve() != args.out.resolve():
        atomic_write_text(folder / "eval.json", text)  # the model card reads it
    print(text, end="")
    return 0


# ------------------------------------------------------------------------------------------------------------ push
def add_push_command(subparsers) -> None:
    parser = subparsers.add_parser(
        "push",
        help="upload a saved pipeline folder to the Hugging Face Hub, with a model card",
        description="Uploads what save_pretrained (or the trainer) wrote, plus a model card, in one commit. "
        "Training checkpoints, tracker logs (the run's --logging_dir, TensorBoard event files, wandb folders), "
        "intermediate sample grids and hidden files stay local. Nothing is uploaded if a file holds the token the "
        "push uses (or another secret: HF_TOKEN, WANDB_API_KEY, ...) or is a symlink leading outside the folder.",
    )
    parser.add_argument("path", metavar="PATH", help="a folder written by save_pretrained or genzoo train")
    parser.add_argument("repo_id", metavar="REPO_ID", help="namespace/name on the Hub")
    parser.add_argument("--private", action="store_true", help="create the repo private")
    parser.add_argument("--token", help="Hub token (default: HF_TOKEN or the stored login)")
    parser.add_argument("--commit-message", help="commit message")
    parser.add_argument("--revision", help="branch to push to (created if needed; default main)")
    parser.add_argument("--license", default="apache-2.0", help="licence in the model card (default apache-2.0)")
    parser.add_argument("--repo-type", choices=("model", "space"), default="model",
                        help="model (default): a pipeline folder; space: a folder written by `genzoo space`")
    parser.add_argument("--include-logs", action="store_true",
                        help="upload the tracker logs too (the run's --logging_dir, TensorBoard event files, wandb "
                        "folders); files holding a secret are still refused")
    parser.set_defaults(run=run_push)


def run_push(args) -> int:
    from huggingface_hub.errors import HfHubHTTPError

    from .hub import push_folder, push_space
    from .secrets import redact, secret_values

    if args.repo_type == "space" and args.include_logs:
        raise CLIError("--include-logs applies to model repos; a Space folder written by `genzoo space` has no logs.")
    try:
        if args.repo_type == "space":
            url = push_space(args.path, args.repo_id, token=args.token, private=args.private or None,
                             commit_message=args.commit_message)
        else:
            url = push_folder(args.path, args.repo_id, token=args.token, private=args.private or None,
                              commit_message=args.commit_message, revision=args.revision, license=args.license,
                              include_logs=args.include_logs)
    except HfHubHTTPError as exc:  # a refused token, a name taken by someone else, ...
        raise CLIError(redact(f"the Hub refused the push to {args.repo_id}: {exc}", secret_values(args))) from None
    print(f"Pushed {args.path} to {args.repo_id}: {url}")
    return 0


# ------------------------------------------------------------------------------------------------------- demo, space
def add_demo_command(subparsers) -> None:
    from .demo.limits import CONCURRENCY_LIMIT, MAX_CACHE_BYTES, MAX_MODEL_BYTES, MAX_SECONDS_PER_REQUEST

    def seconds(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
        if not math.isfinite(value) or value <= 0:
            raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
        return value

    parser = subparsers.add_parser(
        "demo",
        help="serve a web demo (Gradio) of saved pipelines; needs genzoo[demo]",
        description="Starts a Gradio app: sample any of the given pipelines (seed, samples, steps, solver, class "
        "label, prompt, guidance) next to its model card's figures, or compare every model trained on one data set "
        f"with one seed. Only the given pipelines are served. Requests are queued ({CONCURRENCY_LIMIT} samplings of "
        "more than one step at a time, one per model, one-step requests beside them) and bounded (samples, steps, "
        "samples x steps, seed, guidance, prompt length, seconds); each pipeline "
        "is loaded once, when first used. On a --host other than a loopback address it first prints what is "
        "exposed.",
    )
    parser.add_argument("sources", nargs="*", metavar="PATH_OR_REPO_ID",
                        help="saved pipeline folders or Hub ids (default: every pipeline of the zoo, pipelines/)")
    parser.add_argument("--host", default="127.0.0.1", help="address to serve on (default: 127.0.0.1)")
    parser.add_argument("--port", type=positive_int, default=None,
                        help="port (default: Gradio's, 7860 or the next free)")
    parser.add_argument("--allow-any-model", action="store_true",
                        help="also load any pipeline folder or Hub id a visitor types into the model box (off: only "
                        "the given pipelines)")
    parser.add_argument("--share-token-with-visitors", action="store_true",
                        help="with --allow-any-model, fetch visitors' Hub ids with your Hub token (off: anonymously)")
    parser.add_argument("--max-model-bytes", type=positive_int, default=MAX_MODEL_BYTES,
                        help=f"with --allow-any-model, the most bytes of files of a typed model (default: "
                        f"{MAX_MODEL_BYTES})")
    parser.add_argument("--max-cache-bytes", type=positive_int, default=MAX_CACHE_BYTES,
                        help=f"with --allow-any-model, the most bytes of weights of typed models kept in memory "
                        f"(default: {MAX_CACHE_BYTES})")
    parser.add_argument("--max-seconds-per-request", type=seconds, default=MAX_SECONDS_PER_REQUEST,
                        help="a request (its wait for a busy model included) stops after this many seconds "
                        f"(default: {MAX_SECONDS_PER_REQUEST:g})")
    parser.set_defaults(run=run_demo)


def run_demo(args) -> int:
    from .demo import launch

    if args.share_token_with_visitors and not args.allow_any_model:
        raise CLIError("--share-token-with-visitors needs --allow-any-model (the given pipelines always use your "
                       "token)")
    launch(args.sources, host=args.host, port=args.port, allow_any_model=args.allow_any_model,
           share_token_with_visitors=args.share_token_with_visitors, max_model_bytes=args.max_model_bytes,
           max_cache_bytes=args.max_cache_bytes, max_seconds_per_request=args.max_seconds_per_request)
    return 0


def add_space_command(subparsers) -> None:
    parser = subparsers.add_parser(
        "space",
        help="write a Hugging Face Space (Gradio) that demos a pipeline",
        description="Writes app.py, requirements.txt and a README.md with the Space front matter into OUT_DIR. A Hub "
        "id is loaded by id when the Space starts; a local folder is copied into the Space (a link in it that leads "
        "outside it is refused). The Space serves only that model. Upload it with "
        "`genzoo push OUT_DIR USER/NAME --repo-type space`.",
    )
    parser.add_argument("source", metavar="PATH_OR_REPO_ID", help="a save_pretrained folder or a Hub id")
    parser.add_argument("out_dir", metavar="OUT_DIR", type=Path, help="a new (or empty) folder")
    parser.add_argument("--title", help="the Space's title, one line (default: genzoo: <name>)")
    parser.add_argument("--requirement", help="the pip requirement that installs genzoo in the Space, e.g. "
                        "\"genzoo[demo] @ git+https://github.com/genzoo/genzoo@<commit-or-tag>\" (default: "
                        "genzoo[demo]==<this version> for a release; needed for a development version, which no "
                        "package index has)")
    parser.set_defaults(run=run_space)


def run_space(args) -> int:
    from .demo import write_space

    out = write_space(args.source, args.out_dir, title=args.title, requirement=args.requirement)
    print(f"Wrote a Gradio Space for {args.source} to {out}; upload it with "
          f"`genzoo push {out} USER/NAME --repo-type space`")
    return 0


# ------------------------------------------------------------------------------------------------------------ list
def add_list_command(subparsers) -> None:
    parser = subparsers.add_parser(
        "list",
        help="show the registered pipelines, schedulers, models, methods, paths and data sets (genzoo's and "
        "plugins')",
        description="Every name registered through genzoo's entry points, with the package that provides it, read "
        "from the installed packages' metadata (nothing is imported, so it answers at once). --check also imports "
        "each one: a plugin that fails to import is shown as BROKEN with its error; the others are unaffected.",
    )
    parser.add_argument("--kind", choices=list(registry.GROUPS), help="only this kind")
    parser.add_argument("--check", action="store_true",
                        help="import every component and add a STATUS column: ok, or BROKEN and the error (this "
                        "imports torch, Diffusers and each plugin, so it takes seconds)")
    parser.set_defaults(run=run_list)


def run_list(args) -> int:
    rows = []
    for entry in registry.entries(args.kind):
        row = (entry.kind, entry.name, entry.target, entry.package, entry.version)
        if args.check:
            try:
                entry.load()
                status = "ok"
            except ImportError:
                status = f"BROKEN: {' '.join(entry.error.split())}"
            row += (status,)
        rows.append(row)
    if not rows:
        print(f"No genzoo {args.kind}s are registered." if args.kind else "Nothing is registered.")
        return 0
    header = ("KIND", "NAME", "CLASS", "PACKAGE", "VERSION", "STATUS")
    print(_table(header[:len(rows[0])], rows))
    return 0


def _table(header, rows) -> str:
    """Left-aligned columns; the last one (free text) is not padded."""
    widths = [max(len(str(row[i])) for row in (header, *rows)) for i in range(len(header) - 1)]
    lines = []
    for row in (header, *rows):
        cells = [str(cell).ljust(width) for cell, width in zip(row, widths)]
        lines.append("  ".join([*cells, str(row[-1])]))
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------- sample
def add_sample_command(subparsers) -> None:
    parser = subparsers.add_parser(
        "sample",
        help="draw samples from a saved pipeline (folder or Hub repo id) into a PNG or a .npy file",
        description="Load a pipeline with genzoo.load_pipeline and draw seeded samples. Images are written as a "
        "grid (.png), vector data as a scatter plot of the first two dimensions (.png); .npy writes the raw "
        "array: images (N, H, W, C) in [0, 1], vectors (N, D).",
    )
    parser.add_argument("pretrained", metavar="PATH_OR_REPO_ID", help="a save_pretrained folder or a Hub id")
    parser.add_argument("--num-samples", type=positive_int, default=16, help="number of samples (default: 16)")
    parser.add_argument("--steps", type=positive_int, default=None,
                        help="num_inference_steps of DDPM and flow matching (default: the pipeline's, e.g. 50 for flow "
                        "matching); GANs and VAEs sample in one pass and take none")
    parser.add_argument("--seed", type=seed_int, default=0, help="seed of the torch.Generator (default: 0)")
    parser.add_argument(
        "--out", type=Path, default=Path("samples.png"), help="a .png or .npy file (default: samples.png)"
    )
    parser.add_argument("--class-labels", help="class-conditional models: comma-separated label names or ids, e.g. "
                        "7 or 0,1,2 (samples go through them in turn; default: every class in turn)")
    parser.add_argument("--prompt", action="append", help="text-conditional models: a prompt (repeat for several; "
                        "samples go through them in turn)")
    parser.add_argument("--negative-prompt", help="text-conditional models: what guidance steers away from")
    parser.add_argument("--guidance-scale", type=guidance_float,
                        help="classifier-free guidance, a number >= 0 (default: the pipeline's)")
    parser.add_argument("--revision", help="Hub revision (branch, tag or commit)")
    parser.add_argument("--cache-dir", help="Hub cache folder")
    parser.add_argument("--local-files-only", action="store_true", help="never download; use the Hub cache only")
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    parser.add_argument("--dtype", choices=DTYPES, default="float32", help="weights dtype (default: float32)")
    parser.set_defaults(run=run_sample)


def run_sample(args) -> int:
    import numpy as np
    import torch

    from .files import write_replacing
    from .pipelines import VectorPipelineOutput, load_pipeline
    from .visualize import save_samples

    out = Path(args.out)
    if out.suffix.lower() not in OUTPUT_SUFFIXES:
        raise CLIError(f"--out {out}: unsupported file type {out.suffix!r}; use one of {', '.join(OUTPUT_SUFFIXES)}.")
    device = _check_device(args.device)

    pipe = load_pipeline(
        args.pretrained,
        revision=args.revision,
        cache_dir=args.cache_dir,
        local_files_only=args.local_files_only,
        torch_dtype=getattr(torch, args.dtype),
    )
    check_steps(pipe, args.steps)
    pipe.to(device)
    pipe.set_progress_bar_config(disable=not sys.stderr.isatty())  # the bar goes to stderr; stdout stays clean
    if hasattr(pipe, "_check_sampling_memory"):  # before a label or prompt is repeated --num-samples times
        pipe._check_sampling_memory(args.num_samples)
    result = pipe(
        batch_size=args.num_samples,
        generator=torch.Generator(device).manual_seed(args.seed),
        num_inference_steps=args.steps,
        output_type="np",
        **_condition_options(pipe, args),
    )
    is_image = not isinstance(result, VectorPipelineOutput)  # else an ImagePipelineOutput
    samples = result.images if is_image else result.samples

    if out.suffix.lower() == ".npy":
        def write(path):
            with open(path, "wb") as file:  # np.save(path) would append ".npy" to "x.NPY"
                np.save(file, samples.astype("float32"))
            return f"an array of shape {tuple(samples.shape)}"
    else:
        def write(path):
            return save_samples(samples, path, title=_plot_title(pipe, args))
    what = write_replacing(out, write)
    print(f"Wrote {what} from {type(pipe).__name__} (seed {args.seed}) to {out}")
    return 0


def _condition_options(pipe, args) -> dict:
    """The conditioning options the user gave, as pipeline arguments (only those given, so an unconditional
    pipeline's own error names what it does not take)."""
    from .conditioning import label_from_text

    options = {}
    if args.class_labels is not None:
        id2label = getattr(pipe, "id2label", None)
        labels = [label_from_text(v, id2label) for v in args.class_labels.split(",") if v.strip()]
        options["class_labels"] = [labels[i % len(labels)] for i in range(args.num_samples)] if labels else None
    if args.prompt:
        options["prompt"] = [args.prompt[i % len(args.prompt)] for i in range(args.num_samples)]
    if args.negative_prompt is not None:
        options["negative_prompt"] = args.negative_prompt
    if args.guidance_scale is not None:
        options["guidance_scale"] = args.guidance_scale
    import inspect

    accepted = inspect.signature(pipe.__call__).parameters
    for name in options:
        if name not in accepted:
            flag = "--" + name.replace("_", "-")
            raise CLIError(f"{flag}: {type(pipe).__name__} takes no {name} (it accepts {', '.join(accepted)}).")
    return options


def _check_device(name: str):
    import torch

    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise CLIError(f"--device {name!r} is not a torch device ({exc}); e.g. cpu, cuda, cuda:1, mps.") from None
    backend = {"cuda": torch.cuda, "mps": getattr(torch.backends, "mps", None)}.get(device.type)
    if backend is not None and not backend.is_available():
        raise CLIError(f"--device {name}: this torch build or machine has no {device.type}; use --device cpu.")
    return device


def _plot_title(pipe, args) -> str:
    # Pipelines with a scheduler take num_inference_steps; the others (GAN, VAE) sample in one pass.
    steps = "" if one_pass(pipe) else f", {args.steps or pipe.default_num_inference_steps} steps"
    return f"{type(pipe).__name__}: {args.num_samples} samples{steps}, seed {args.seed}"


if __name__ == "__main__":
    sys.exit(main())

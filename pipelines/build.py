"""Build the zoo: train each ``pipelines/<name>/recipe.yaml``, evaluate it, and write the folder ``push_to_hub`` would
upload (pipeline, model card, sample grid, metrics, evaluation, recipe) into ``pipelines/<name>/``.

    python pipelines/build.py                          # every zoo pipeline, one after the other
    python pipelines/build.py flow-matching-digits     # one
    python pipelines/build.py vae-shapes --no-train    # evaluate and write the folder of a finished run again
    python pipelines/build.py --cards                  # only rewrite the cards and genzoo_hub.py files (no training)

Each recipe trains in ``runs/zoo/<name>`` (its ``output_dir``); only what a push uploads is copied here, and the
recipe is replaced by the complete one the trainer wrote (every option, defaults included), so the folder says
exactly how it was made. Run it with nothing else running: the cards state the wall-clock time it took.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

from genzoo import registry
from genzoo.data import get_dataset, registered_datasets
from genzoo.project import REPOSITORY_URL

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
#: The data set of each kind on which the zoo holds every genzoo method that trains on that kind (``data_kinds``).
#: The card evaluation of a zoo pipeline uses its data set's ``eval_samples`` (what tests/test_zoo.py re-measures);
#: where that is too slow for the test suite to repeat on every run, the suite repeats the same evaluation with the
#: data set's ``check_samples`` instead, against its ``check_metrics`` stored under "check" in eval.json
#: (write_check).
ZOO_DATASETS = {"image": "digits", "vector": "moons"}
#: Sampling steps of a card's evaluation where not the pipeline's default. DDPM on digits: 100 of the 1000 ancestral
#: steps draw digits at least as close to the data (digits-FD 12.9 against 19.1 with all 1000, 500 samples, seed 0)
#: in a tenth of the time, and the test suite re-measures every card.
EVAL_STEPS = {"ddpm-digits": 100, "flow-matching-shapes": 20, "latent-flow-matching-shapes": 20}
#: What a card says about its pipeline beyond the method, data and numbers (the shapes pipelines' roles).
ABOUT = {
    "vae-shapes": "An autoencoder for latent models rather than a generator: trained with a small KL weight "
                  "(`--beta 0.01`), it reconstructs held-out images closely (benchmarks/RESULTS.md, section 7) "
                  "while its prior's samples, shown here and measured below, are poor. It maps 32x32x3 images to "
                  "8x8x4 latents and is the `--vae` of `latent-flow-matching-shapes` (docs/latent.md).",
    "flow-matching-shapes": "Class-conditional flow matching in pixel space: the class is the first-named shape "
                            "(`class_labels=[\"circle\"]`, guidance 2.0 by default).",
    "latent-flow-matching-shapes": "Text-conditional flow matching in the 8x8x4 latent space of `vae-shapes`, which "
                                   "this folder carries as its `vae` component and decodes with: prompt it with "
                                   "captions like \"a small red circle in the top left\" (docs/data.md). Prompt "
                                   "faithfulness is measured on held-out captions and on held-out shape-colour "
                                   "compositions (`unseen_*`).",
    "dmd-moons": "A one-call student of `ddpm-moons`, distilled by distribution matching with a GAN critic "
                 "(`--method dmd --gan_weight 0.1`, docs/few-step.md): one model call per sample against its "
                 "teacher's 1000.",
    "dmd-digits": "A one-call student of `flow-matching-digits`, distilled by distribution matching with a GAN critic "
                  "(`--method dmd --gan_weight 0.1`, docs/few-step.md): one model call per sample against its "
                  "teacher's 50.",
    "flow-matching-class-digits": "Class-conditional flow matching on the digits (`--conditioning class`, the recipe "
                                  "of `flow-matching-digits` otherwise): ask for a digit with "
                                  "`class_labels=[\"7\"]`; the teacher of `dmd-class-digits`.",
    "dmd-class-digits": "A class-conditional one-call student of `flow-matching-class-digits`, distilled by "
                        "distribution matching with a GAN critic (`--method dmd --conditioning class --gan_weight "
                        "0.1`, docs/few-step.md): one model call per sample, no guidance pass, against its teacher's "
                        "50 calls. `class_accuracy` is the fraction of samples the digits classifier assigns to the "
                        "asked-for digit.",
    "latent-dmd-shapes": "A text-conditional one-call student of `latent-flow-matching-shapes`, distilled by "
                         "distribution matching in its 8x8x4 latent space (`--method dmd --conditioning text "
                         "--teacher_guidance 2.0`, docs/few-step.md): it keeps the teacher's tokenizer, text encoder "
                         "and `vae`, and draws a prompted image in one model call, no guidance pass, against the "
                         "teacher's 20 guided calls. Prompt faithfulness is measured as for its teacher, on held-out "
                         "captions and held-out shape-colour compositions (`unseen_*`).",
}
#: Recipe options that name another zoo pipeline, which must be built first.
DEPENDENCY_OPTIONS = ("teacher", "vae")


def folder_mib(folder: Path) -> float:
    """Size of everything in ``folder``, in MiB."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20


def zoo_names() -> list[str]:
    """Every zoo pipeline, a pipeline after the zoo pipelines its recipe names (``--teacher``, ``--vae``)."""
    names = sorted(p.parent.name for p in HERE.glob("*/recipe.yaml"))
    ordered: list[str] = []

    def visit(name):
        if name in ordered:
            return
        recipe = yaml.safe_load((HERE / name / "recipe.yaml").read_text())
        for option in DEPENDENCY_OPTIONS:
            source = str(recipe.get(option) or "")
            if source.startswith("pipelines/") and source.split("/")[1] in names:
                visit(source.split("/")[1])
        ordered.append(name)

    for name in names:
        visit(name)
    return ordered


def run(command: list[str]) -> None:
    print("+ " + " ".join(command), flush=True)
    subprocess.run(command, check=True, cwd=ROOT)


def evaluate(source: Path, out: Path, num_samples: int, steps: int | None, seed: int) -> None:
    """``genzoo eval`` of the pipeline (or run) folder ``source`` into ``out`` (``steps``: the pipeline's own when
    ``None``)."""
    run([sys.executable, "-m", "genzoo.cli", "eval", str(source), "--num-samples", str(num_samples),
         *(["--steps", str(steps)] if steps else []), "--seed", str(seed), "--out", str(out)])


def build(name: str, train: bool = True) -> None:
    """Train (unless ``train`` is false and ``runs/zoo/<name>`` holds a finished run), evaluate and write the folder."""
    folder = HERE / name
    recipe = yaml.safe_load((folder / "recipe.yaml").read_text())
    run_dir = ROOT / "runs" / "zoo" / name
    start = time.perf_counter()
    if train or not (run_dir / "metrics.json").is_file():
        shutil.rmtree(run_dir, ignore_errors=True)
        run([sys.executable, "-m", "genzoo.training", "--config", str(folder / "recipe.yaml"),
             "--output_dir", str(run_dir.relative_to(ROOT))])
    train_minutes = (time.perf_counter() - start) / 60
    dataset = recipe["dataset"]
    evaluate(run_dir, run_dir / "eval.json", get_dataset(dataset).eval_samples, EVAL_STEPS.get(name), seed=0)

    from genzoo.hub import files_to_upload

    for path in folder.iterdir():  # the folder becomes exactly what a push uploads
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    for path in files_to_upload(run_dir):
        target = folder / path.relative_to(run_dir)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    write_check(name)
    write_card(name, train_minutes)
    print(f"{name}: {train_minutes:.1f} min, {folder_mib(folder):.2f} MiB", flush=True)


def write_check(name: str) -> None:
    """Add to ``pipelines/<name>/eval.json`` the figures of the card's evaluation repeated with the data set's
    ``check_samples`` samples (same seed and steps), where it has them; tests/test_zoo.py re-measures those."""
    folder = HERE / name
    evaluation = json.loads((folder / "eval.json").read_text())
    data = get_dataset(evaluation["dataset"])
    if data.check_samples is None:
        return
    out = ROOT / "runs" / "zoo" / f"{name}-check.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    evaluate(folder, out, data.check_samples, evaluation["num_inference_steps"], evaluation["seed"])
    check = json.loads(out.read_text())
    conditional = ("class_accuracy",) if check.get("class_accuracy") is not None else ()
    evaluation["check"] = {key: check[key] for key in ("num_samples", "seed", *data.check_metrics, *conditional)}
    evaluation["check"]["num_inference_steps"] = evaluation["num_inference_steps"]  # the card's (None: the default)
    (folder / "eval.json").write_text(json.dumps(evaluation, indent=2) + "\n")


def write_card(name: str, train_minutes: float | None = None) -> None:
    """The model card of the built folder ``pipelines/<name>`` from its files (``train_minutes``: the whole build
    command's, when known)."""
    from genzoo.hub import make_model_card

    folder = HERE / name
    recipe = yaml.safe_load((folder / "recipe.yaml").read_text())
    metrics = json.loads((folder / "metrics.json").read_text())
    run_minutes = metrics["wall_seconds_this_run"] / 60
    if train_minutes is None and (folder / "README.md").is_file():  # keep what the build that trained it measured
        shown = re.search(r"\(([0-9.]+) minutes for the\s+whole command\)", (folder / "README.md").read_text())
        train_minutes = float(shown.group(1)) if shown else None
    about = f"## About\n\n{ABOUT[name]}\n\n" if name in ABOUT else ""
    notes = about + f"""## Reproduce

This is genzoo's zoo pipeline `{name}` (`pipelines/{name}` in the
[genzoo repository]({REPOSITORY_URL})). In a clone of it, one command retrains it from its recipe, seeded
(`--seed {recipe.get('seed', 0)}`), into `runs/zoo/{name}`:

```bash
genzoo train --config pipelines/{name}/recipe.yaml
# or: accelerate launch train/train.py --config pipelines/{name}/recipe.yaml
```

It took {run_minutes:.1f} minutes of wall-clock time ({max(train_minutes or 0, run_minutes):.1f} minutes for the
whole command) on {metrics['machine']}. `python pipelines/build.py {name}` retrains, re-evaluates and rewrites this
folder. The model is tiny on purpose (a few MB). To scale it up: {registry.get("method", recipe["method"]).scale_up}
"""
    card = make_model_card(folder, f"pipelines/{name}", notes=notes)
    (folder / "README.md").write_text(str(card))


def write_shims(name: str) -> None:
    """Rewrite the ``genzoo_hub.py`` files the built folder ``pipelines/<name>`` has with the installed genzoo's
    text (``genzoo.pipelines.loading.SHIM_SOURCE``); no other file changes."""
    from genzoo.pipelines.loading import SHIM_MODULE, SHIM_SOURCE

    for path in sorted((HERE / name).rglob(f"{SHIM_MODULE}.py")):
        path.write_text(SHIM_SOURCE)


TABLE_START, TABLE_END = "<!-- zoo table: written by pipelines/build.py -->", "<!-- end of zoo table -->"


def zoo_table() -> str:
    """The markdown tables of docs/zoo.md: every registered method that has a zoo pipeline, side by side on each
    registered data set that has one (its ``summary_metrics`` as columns), from the folders' eval.json and
    metrics.json."""
    lines = []
    for dataset, data in registered_datasets().items():
        if not any(HERE.glob(f"*-{dataset}/eval.json")):
            continue
        columns = data.summary_metrics
        lines += [f"**{dataset}**", "",
                  "| pipeline | " + " | ".join(columns) + " | model calls / sample | MiB | train minutes (2-core CPU) |",
                  "|---|" + "---|" * (len(columns) + 3)]
        folders = [HERE / f"{method}-{dataset}" for method in registry.names("method")]
        folders += [p for p in sorted(HERE.glob(f"*-{dataset}")) if p not in folders]  # e.g. latent-flow-matching-shapes
        for folder in folders:
            if not (folder / "eval.json").is_file():
                continue
            evaluation = json.loads((folder / "eval.json").read_text())
            metrics = json.loads((folder / "metrics.json").read_text())
            size = folder_mib(folder)
            cells = ["–" if evaluation.get(c) is None else f"{evaluation[c]:.3f}" for c in columns]
            lines.append(f"| [`{folder.name}`](../pipelines/{folder.name}/README.md) | " + " | ".join(cells)
                         + f" | {evaluation['model_calls_per_sample']} | {size:.1f} | "
                         f"{metrics['wall_seconds_this_run'] / 60:.1f} |")
        lines.append("")
    return "\n".join(lines)


def write_docs_table(path: Path = ROOT / "docs" / "zoo.md") -> None:
    text = path.read_text()
    start, end = text.index(TABLE_START) + len(TABLE_START), text.index(TABLE_END)
    path.write_text(text[:start] + "\n" + zoo_table() + "\n" + text[end:])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help=f"zoo pipelines to build (default: all of {', '.join(zoo_names())})")
    parser.add_argument("--cards", action="store_true",
                        help="only rewrite the model cards and genzoo_hub.py files of the built folders from their "
                        "files (no training or evaluation)")
    parser.add_argument("--checks", action="store_true",
                        help="only re-measure the test suite's smaller evaluation (eval.json's check) of the built folders")
    parser.add_argument("--no-train", action="store_true",
                        help="reuse the finished run in runs/zoo/<name> where there is one: evaluate and write the folder")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.names) - set(zoo_names()))
    if unknown:
        parser.error(f"unknown zoo pipeline(s) {', '.join(unknown)}; known: {', '.join(zoo_names())}")
    for name in [n for n in zoo_names() if n in args.names] if args.names else zoo_names():
        if args.cards:
            write_card(name)
            write_shims(name)
        elif args.checks:
            write_check(name)
        else:
            build(name, train=not args.no_train)
    write_docs_table()


if __name__ == "__main__":
    main()

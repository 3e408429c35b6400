"""Build the zoo: train each ``pipelines/<name>/recipe.yaml``, evaluate it, and write the folder ``push_to_hub`` would
upload (pipeline, model card, sample grid, metrics, evaluation, recipe) into ``pipelines/<name>/``.

    python pipelines/build.py                          # every zoo pipeline, one after the other
    python pipelines/build.py flow-matching-digits     # one

Each recipe trains in ``runs/zoo/<name>`` (its ``output_dir``); only what a push uploads is copied here, and the
recipe is replaced by the complete one the trainer wrote (every option, defaults included), so the folder says
exactly how it was made. Run it with nothing else running: the cards state the wall-clock time it took.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

from genzoo import registry

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
#: Evaluation settings of the zoo: what the cards report and what tests/test_zoo.py re-measures.
EVAL_SAMPLES = {"digits": 500, "moons": 1000}
#: Sampling steps of a card's evaluation where not the pipeline's default. DDPM on digits: 100 of the 1000 ancestral
#: steps draw digits at least as close to the data (digits-FD 12.9 against 19.1 with all 1000, 500 samples, seed 0)
#: in a tenth of the time, and the test suite re-measures every card.
EVAL_STEPS = {"ddpm-digits": 100}
def folder_mib(folder: Path) -> float:
    """Size of everything in ``folder``, in MiB."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20


def zoo_names() -> list[str]:
    return sorted(p.parent.name for p in HERE.glob("*/recipe.yaml"))


def run(command: list[str]) -> None:
    print("+ " + " ".join(command), flush=True)
    subprocess.run(command, check=True, cwd=ROOT)


def build(name: str) -> None:
    folder = HERE / name
    recipe = yaml.safe_load((folder / "recipe.yaml").read_text())
    run_dir = ROOT / "runs" / "zoo" / name
    shutil.rmtree(run_dir, ignore_errors=True)
    start = time.perf_counter()
    run([sys.executable, "-m", "genzoo.training", "--config", str(folder / "recipe.yaml"),
         "--output_dir", str(run_dir.relative_to(ROOT))])
    train_minutes = (time.perf_counter() - start) / 60
    dataset = recipe["dataset"]
    steps = ["--steps", str(EVAL_STEPS[name])] if name in EVAL_STEPS else []
    run([sys.executable, "-m", "genzoo.cli", "eval", str(run_dir), "--num-samples", str(EVAL_SAMPLES[dataset]),
         *steps, "--seed", "0", "--out", str(run_dir / "eval.json")])

    from genzoo.hub import files_to_upload, make_model_card

    for path in folder.iterdir():  # the folder becomes exactly what a push uploads
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    for path in files_to_upload(run_dir):
        target = folder / path.relative_to(run_dir)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    metrics = json.loads((folder / "metrics.json").read_text())
    notes = f"""## Reproduce

This is genzoo's zoo pipeline `{name}` (`pipelines/{name}` in the genzoo repository). One command retrains it from
its recipe, seeded (`--seed {recipe.get('seed', 0)}`), into `runs/zoo/{name}`:

```bash
genzoo train --config pipelines/{name}/recipe.yaml
# or: accelerate launch train/train.py --config pipelines/{name}/recipe.yaml
```

It took {metrics['wall_seconds_this_run'] / 60:.1f} minutes of wall-clock time ({train_minutes:.1f} minutes for the
whole command) on {metrics['machine']}. `python pipelines/build.py {name}` retrains, re-evaluates and rewrites this
folder. The model is tiny on purpose (a few MB). To scale it up: {registry.get("method", recipe["method"]).scale_up}
"""
    card = make_model_card(folder, f"pipelines/{name}", notes=notes)
    (folder / "README.md").write_text(str(card))
    print(f"{name}: {train_minutes:.1f} min, {folder_mib(folder):.2f} MiB", flush=True)


TABLE_START, TABLE_END = "<!-- zoo table: written by pipelines/build.py -->", "<!-- end of zoo table -->"


def zoo_table() -> str:
    """The markdown tables of docs/zoo.md: every registered method that has a zoo pipeline, side by side on each
    data set, from the folders' eval.json and metrics.json."""
    lines = []
    for dataset, columns in (("digits", ("digits_fd", "precision", "recall", "coverage")), ("moons", ("w2", "mmd2_rbf"))):
        lines += [f"**{dataset}**", "",
                  "| pipeline | " + " | ".join(columns) + " | model calls / sample | MiB | train minutes (2-core CPU) |",
                  "|---|" + "---|" * (len(columns) + 3)]
        for method in registry.names("method"):
            folder = HERE / f"{method}-{dataset}"
            if not (folder / "eval.json").is_file():
                continue
            evaluation = json.loads((folder / "eval.json").read_text())
            metrics = json.loads((folder / "metrics.json").read_text())
            size = folder_mib(folder)
            cells = [f"{evaluation[c]:.3f}" for c in columns]
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
    args = parser.parse_args(argv)
    unknown = sorted(set(args.names) - set(zoo_names()))
    if unknown:
        parser.error(f"unknown zoo pipeline(s) {', '.join(unknown)}; known: {', '.join(zoo_names())}")
    for name in args.names or zoo_names():
        build(name)
    write_docs_table()


if __name__ == "__main__":
    main()

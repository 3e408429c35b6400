"""The zoo (pipelines/): every pipeline loads offline with genzoo and with plain Diffusers, its card and recipe parse,
the recipe names only options the trainer knows, and a fixed-seed evaluation still reaches the figures in its card
(so a change that breaks loading or silently degrades a model fails here)."""

import json
from pathlib import Path

import pytest
import torch
import yaml
from diffusers import DiffusionPipeline
from huggingface_hub import ModelCard

import genzoo
from genzoo import registry
from genzoo.data import get_dataset
from genzoo.metrics.evaluate import evaluate_pipeline
from genzoo.training import parse_args

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
ZOO = ROOT / "pipelines"
#: How far a re-measured figure may drift from its card (CPU float differences; the draw itself is seeded): a
#: headline metric where lower is better (FD, W2) by this fraction up, one where higher is better (coverage,
#: precision) by this much down.
RELATIVE_MARGIN, ABSOLUTE_MARGIN = 0.05, 0.1
MAX_MIB = 5.0
#: A zoo pipeline must stay cheap to reproduce. The bound has room for the machine's speed, which varies: the UNet
#: of flow-matching-digits trained at 14.5 steps/s when it was built and at 5.2 on 2026-12-01, when
#: rectified-flow-digits (pairs made in the run, then 4000 steps) took 15.4 minutes.
MAX_WALL_MINUTES = 20.0
#: The 32x32 shapes pipelines: "CPU-trainable within about 30 minutes each" (issue 15).
MAX_WALL_MINUTES_SHAPES = 30.0


def load_build_script():
    """pipelines/build.py as a module (it is a script, not part of the package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("zoo_build", ZOO / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


build = load_build_script()
#: genzoo's own methods (plugins' are not in the zoo), each on the zoo's data set of every kind it trains on
FAMILIES = [entry.name for entry in registry.entries("method") if entry.package == "genzoo"]
#: and, on the 32x32 colour shapes, a VAE and flow matching in pixels and in that VAE's latents, with the latent
#: model's one-call student
SHAPES_NAMES = ["vae-shapes", "flow-matching-shapes", "latent-flow-matching-shapes", "latent-dmd-shapes"]
#: and a class-conditional digits teacher with its one-call student
CLASS_NAMES = ["flow-matching-class-digits", "dmd-class-digits"]
NAMES = [f"{family}-{data}" for kind, data in build.ZOO_DATASETS.items() for family in FAMILIES
         if kind in registry.get("method", family).data_kinds] + SHAPES_NAMES + CLASS_NAMES


def card_results(folder: Path) -> dict:
    card = ModelCard.load(folder / "README.md")
    return {result.metric_type: result.metric_value for result in card.data.eval_results}


def test_the_zoo_has_every_family_on_its_data_sets_and_the_shapes_pipelines():
    assert sorted(p.name for p in ZOO.iterdir() if (p / "model_index.json").is_file()) == sorted(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_card_metadata_recipe_and_size(name):
    folder = ZOO / name
    card = ModelCard.load(folder / "README.md")
    recipe = yaml.safe_load((folder / "recipe.yaml").read_text())
    family, dataset = recipe["method"], name.rsplit("-", 1)[1]
    assert card.data.library_name == "diffusers" and "genzoo" in card.data.tags and family in card.data.tags
    assert card.data.datasets == [dataset]
    assert "![Samples from this model](samples.png)" in card.text and (folder / "samples.png").is_file()
    assert f"genzoo train --config pipelines/{name}/recipe.yaml" in card.text
    results = card_results(folder)
    assert set(get_dataset(dataset).headline_metrics) <= set(results)
    # the recipe parses, every option in it is one the trainer knows (parse_args refuses unknown ones), and it
    # trains what the card says into runs/zoo/<name>
    args = parse_args(["--config", str(folder / "recipe.yaml")])
    assert args.method == recipe["method"] == family and args.dataset == dataset
    assert args.output_dir == f"runs/zoo/{name}"
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["global_step"] == args.max_train_steps
    limit = MAX_WALL_MINUTES_SHAPES if dataset == "shapes" else MAX_WALL_MINUTES
    assert metrics["wall_seconds_this_run"] / 60 <= limit and "CPU cores" in metrics["machine"]
    # a latent pipeline also carries its --vae (a latent student its teacher's), a copy of another zoo folder's
    # weights, counted apart
    own_mib = build.folder_mib(folder) - (build.folder_mib(folder / "vae") if (folder / "vae").is_dir() else 0.0)
    assert own_mib <= MAX_MIB, f"{name} is {own_mib:.1f} MiB besides the vae it carries"
    # exactly what a push uploads: no checkpoints, logs or intermediate grids
    assert not {"checkpoints", "logs", "samples"} & {p.name for p in folder.iterdir()}


def public(config) -> dict:
    """A component's configuration as its config.json holds it (tuples as lists), without Diffusers' bookkeeping."""
    config = config.to_dict() if hasattr(config, "to_dict") else dict(config)  # transformers' configs are not dicts
    saving = {"architectures", "dtype", "torch_dtype", "transformers_version"}  # what transformers adds when saving
    keep = {k: v for k, v in config.items() if (not k.startswith("_") or k == "_id2label") and k not in saving}
    return json.loads(json.dumps(keep))


@pytest.mark.parametrize("name", NAMES)
def test_the_recipe_still_builds_the_pipeline_in_the_folder(name):
    """Today's code, given the zoo's recipe, builds components with exactly the configuration the folder holds (the
    models and the scheduler), so retraining the recipe reproduces the same kind of pipeline."""
    from genzoo.data import load_training_data
    from genzoo.training.trainer import load_teacher

    args = parse_args(["--config", str(ZOO / name / "recipe.yaml")])
    method = registry.get("method", args.method).from_options(args, load_training_data(args))
    if method.teacher_source() is not None:  # as the trainer does before build_models (a DMD student copies it)
        method.teacher = load_teacher(method.teacher_source(), torch.device("cpu"))
    built = method.make_pipeline(method.build_models())
    saved = genzoo.load_pipeline(ZOO / name)
    assert type(built) is type(saved)
    measured = {}
    if getattr(args, "vae", None):  # latent statistics: measured on the data when training starts, kept in metrics.json
        metrics = json.loads((ZOO / name / "metrics.json").read_text())
        measured = {"scaling_factor": metrics["latent_scaling_factor"], "shift_factor": metrics["latent_shift_factor"]}
        assert {k: saved.vae.config[k] for k in measured} == measured
    for component, value in saved.components.items():
        if hasattr(value, "config"):
            assert type(built.components[component]) is type(value), component
            expected = {**public(built.components[component].config), **(measured if component == "vae" else {})}
            assert expected == public(value.config), component


@pytest.mark.parametrize("name", NAMES)
def test_loads_offline_and_keeps_the_quality_in_its_card(name):
    folder = ZOO / name
    pipe = genzoo.load_pipeline(folder)
    plain = DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)
    assert type(plain) is type(pipe)
    for p in (pipe, plain):
        p.set_progress_bar_config(disable=True)
    kwargs = dict(batch_size=4, generator=torch.Generator().manual_seed(0), num_inference_steps=10, output_type="pt")
    first = pipe(**kwargs)
    kwargs["generator"] = torch.Generator().manual_seed(0)
    second = plain(**kwargs)
    torch.testing.assert_close(*(getattr(o, "images", None) if hasattr(o, "images") else o.samples
                                 for o in (first, second)))

    measured = json.loads((folder / "eval.json").read_text())  # the settings the card's figures were measured with
    check = measured.get("check")  # where that is too slow to repeat: the same evaluation with fewer samples
    if check:
        assert (check["seed"], check["num_inference_steps"]) == (measured["seed"], measured["num_inference_steps"])
        assert check["num_samples"] == get_dataset(measured["dataset"]).check_samples < measured["num_samples"]
    settings = check or measured
    result = evaluate_pipeline(pipe, measured["dataset"], num_samples=settings["num_samples"], seed=settings["seed"],
                               steps=settings["num_inference_steps"], likelihood=False)
    card = check or card_results(folder)
    if "class_accuracy" in settings:  # class-conditional: the asked-for digit, as often as the card says
        assert result["class_accuracy"] >= settings["class_accuracy"] - ABSOLUTE_MARGIN, result["class_accuracy"]
    for metric, better in get_dataset(measured["dataset"]).headline_metrics.items():
        if better == "lower":
            assert result[metric] <= card[metric] * (1 + RELATIVE_MARGIN), (metric, result[metric], card[metric])
        else:
            assert result[metric] >= card[metric] - ABSOLUTE_MARGIN, (metric, result[metric], card[metric])


def test_docs_zoo_table_is_the_one_the_folders_give():
    text = (ROOT / "docs" / "zoo.md").read_text()
    table = text[text.index(build.TABLE_START) + len(build.TABLE_START):text.index(build.TABLE_END)]
    assert table.strip() == build.zoo_table().strip(), "rerun `python pipelines/build.py` or its write_docs_table()"
    assert sorted(build.zoo_names()) == sorted(NAMES)

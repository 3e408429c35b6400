"""genzoo.metrics.evaluate and `genzoo eval` on trained pipelines of every family."""

import json

import numpy as np
import pytest

import genzoo
from genzoo.cli import main
from genzoo.hub import make_model_card
from genzoo.metrics.evaluate import evaluate_pipeline
from genzoo.testing import run_training

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    for method, dataset in (("flow-matching", "moons"), ("vae", "moons"), ("gan", "digits"), ("ddpm", "8gaussians"),
                            ("vae", "digits")):
        run_training(method, dataset, root / f"{method}-{dataset}")
    for method in ("vae", "gan"):
        run_training(method, "digits", root / f"{method}-class", "--conditioning", "class")
    run_training("flow-matching", "digits", root / "fm-text", "--conditioning", "text", "--text_hidden_size", "16")
    return root


def test_point_cloud_metrics_and_flow_likelihood(runs):
    pipe = genzoo.load_pipeline(runs / "flow-matching-moons")
    result = evaluate_pipeline(pipe, "moons", num_samples=200, steps=4, seed=3, likelihood_points=50,
                               likelihood_steps=20)
    assert result["model_calls_per_sample"] == 4 and result["num_samples"] == 200
    assert result["w2"] > 0 and np.isfinite(result["mmd2_rbf"]) and np.isfinite(result["nll_nats"])
    assert result == {**evaluate_pipeline(pipe, "moons", num_samples=200, steps=4, seed=3, likelihood_points=50,
                                          likelihood_steps=20), "sampling_seconds": result["sampling_seconds"]}


@pytest.mark.parametrize("option, value, message", [
    ("num_samples", 1, "num_samples must be an integer >= 2, got 1"),
    ("likelihood_points", 0, "likelihood_points must be a positive integer, got 0"),
    ("likelihood_steps", 2.5, "likelihood_steps must be a positive integer, got 2.5"),
    ("iwae_k", True, "iwae_k must be a positive integer, got True"),
])
def test_counts_that_cannot_work_are_refused_before_sampling(runs, option, value, message):
    pipe = genzoo.load_pipeline(runs / "flow-matching-moons")
    calls = []
    pipe.unet.register_forward_hook(lambda *args: calls.append(1))
    with pytest.raises(ValueError, match=message):
        evaluate_pipeline(pipe, "moons", **{"num_samples": 10, option: value})
    assert calls == []


def test_vae_bound_and_ddpm(runs):
    vae = evaluate_pipeline(genzoo.load_pipeline(runs / "vae-moons"), "moons", num_samples=100, iwae_k=4)
    assert np.isfinite(vae["iwae_nll_nats"]) and vae["iwae_k"] == 4 and vae["model_calls_per_sample"] == 1
    ddpm = evaluate_pipeline(genzoo.load_pipeline(runs / "ddpm-8gaussians"), "8gaussians", num_samples=100, steps=5)
    assert ddpm["model_calls_per_sample"] == 5 and "nll_nats" not in ddpm and ddpm["w2"] > 0


def test_digits_metrics(runs):
    result = evaluate_pipeline(genzoo.load_pipeline(runs / "gan-digits"), "digits", num_samples=100)
    for key in ("digits_fd", "precision", "recall", "coverage", "class_entropy", "digits_fd_floor"):
        assert np.isfinite(result[key]), key
    assert sum(result["class_histogram"]) == 100
    vae = evaluate_pipeline(genzoo.load_pipeline(runs / "vae-digits"), "digits", num_samples=50, iwae_k=2)
    assert np.isfinite(vae["iwae_nll_nats"]) and vae["iwae_points"] == 360  # the held-out test split
    with pytest.raises(ValueError, match="--dataset must be 'digits' for image pipelines; got 'moons'"):
        evaluate_pipeline(genzoo.load_pipeline(runs / "gan-digits"), "moons", num_samples=10)


def test_genzoo_eval_writes_json_and_feeds_the_model_card(runs, tmp_path, capsys):
    folder = runs / "flow-matching-moons"
    code = main(["eval", str(folder), "--num-samples", "100", "--steps", "3", "--likelihood-steps", "10",
                 "--out", str(tmp_path / "e.json"), "--update-card"])
    out, err = capsys.readouterr()
    assert code == 0, err
    printed = json.loads(out)
    assert printed["dataset"] == "moons"  # read from the run's recipe.yaml
    assert json.loads((tmp_path / "e.json").read_text()) == printed == json.loads((folder / "eval.json").read_text())
    card = make_model_card(folder, "user/fm").data.to_dict()
    metric_types = {m["type"] for r in card["model-index"][0]["results"] for m in r["metrics"]}
    assert {"w2", "mmd2_rbf", "nll_nats", "train_loss"} <= metric_types


def test_genzoo_eval_mistakes(runs, capsys, tmp_path):
    code = main(["eval", str(runs / "gan-digits"), "--dataset", "moons", "--num-samples", "10",
                 "--out", str(tmp_path / "x.json")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("genzoo: error:") and "'digits'" in err and len(err.splitlines()) == 1
    # too few samples for the image metrics: the option the user set and its minimum, before any sampling
    code = main(["eval", str(runs / "gan-digits"), "--num-samples", "2", "--out", str(tmp_path / "x.json")])
    err = capsys.readouterr().err
    assert code == 2 and "num_samples=2 is too few for the 'digits' metrics" in err and "--num-samples 6" in err
    assert not (tmp_path / "x.json").exists()


def test_conditional_pipelines_are_asked_for_every_digit_and_scored_on_it(runs, tmp_path, capsys):
    for name in ("vae-class", "gan-class", "fm-text"):
        pipe = genzoo.load_pipeline(runs / name)
        result = evaluate_pipeline(pipe, "digits", num_samples=40, steps=2, iwae_k=2)
        assert result["conditioning"] == ("text" if name == "fm-text" else "class")
        assert 0 <= result["class_accuracy"] <= 1 and np.isfinite(result["digits_fd"])
        assert result["guidance_scale"] == (2.0 if name == "fm-text" else None)  # GANs and VAEs have no guidance
    # a conditional VAE bounds -log p(x | y) with the held-out digits' own labels
    vae = evaluate_pipeline(genzoo.load_pipeline(runs / "vae-class"), "digits", num_samples=20, iwae_k=2)
    assert vae["iwae_conditional_on_label"] and np.isfinite(vae["iwae_nll_nats"])
    code = main(["eval", str(runs / "fm-text"), "--num-samples", "20", "--steps", "2", "--guidance-scale", "1.5",
                 "--out", str(tmp_path / "e.json"), "--update-card"])
    assert code == 0 and json.loads(capsys.readouterr().out)["guidance_scale"] == 1.5
    card = make_model_card(runs / "fm-text", "user/text")
    assert card.data.pipeline_tag == "text-to-image" and "text-conditional" in card.data.tags
    assert 'pipe(prompt="a handwritten seven"' in card.text and "--guidance-scale 1.5" in card.text
    assert "accuracy on the asked-for class" in card.text


def test_one_pass_pipelines_record_no_steps_and_refuse_explicit_steps(runs, tmp_path, capsys):
    gan = evaluate_pipeline(genzoo.load_pipeline(runs / "gan-digits"), "digits", num_samples=20, steps=7)
    assert gan["num_inference_steps"] is None and gan["model_calls_per_sample"] == 1  # a GAN takes no steps
    flow = evaluate_pipeline(genzoo.load_pipeline(runs / "flow-matching-moons"), "moons", num_samples=20,
                             likelihood=False)
    assert flow["num_inference_steps"] == flow["model_calls_per_sample"] == 50  # the default, stated
    folder = runs / "vae-moons"
    (folder / "eval.json").unlink(missing_ok=True)
    code = main(["eval", str(folder), "--steps", "5", "--num-samples", "20", "--out", str(tmp_path / "e.json")])
    out, err = capsys.readouterr()
    assert code == 2 and out == "" and len(err.splitlines()) == 1
    assert err.startswith("genzoo: error: --steps 5: VAEPipeline samples in one pass")
    assert not (tmp_path / "e.json").exists() and not (folder / "eval.json").exists()
    code = main(["eval", str(folder), "--num-samples", "20", "--iwae-k", "2", "--out", str(tmp_path / "e.json"),
                 "--update-card"])
    assert code == 0 and json.loads(capsys.readouterr().out)["num_inference_steps"] is None
    assert json.loads((folder / "eval.json").read_text())["num_inference_steps"] is None


@pytest.mark.parametrize("argv, message", [
    (["--guidance-scale", "nan"], "argument --guidance-scale: expected a finite number >= 0, got 'nan'"),
    (["--guidance-scale", "2"], "--guidance-scale 2: FlowMatchingPipeline is unconditional"),
    (["--seed", "-3"], "argument --seed: expected a seed from 0 to"),
])
def test_genzoo_eval_refuses_values_it_would_ignore_or_choke_on(runs, tmp_path, capsys, argv, message):
    code = main(["eval", str(runs / "flow-matching-moons"), "--num-samples", "20", "--out", str(tmp_path / "e.json"),
                 *argv])
    out, err = capsys.readouterr()
    assert code == 2 and out == "" and len(err.splitlines()) == 1 and message in err, err
    assert not (tmp_path / "e.json").exists()


def test_a_killed_eval_leaves_the_old_eval_json_whole(runs, tmp_path, capsys, monkeypatch):
    import os

    folder = runs / "ddpm-8gaussians"
    argv = ["eval", str(folder), "--num-samples", "20", "--steps", "2", "--update-card", "--out", str(tmp_path / "e.json")]
    assert main(argv) == 0
    capsys.readouterr()
    before = (folder / "eval.json").read_bytes(), (tmp_path / "e.json").read_bytes()

    def fail(fd):  # the data is half on its way to the disk when the write fails
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", fail)
    code = main([*argv[:-2], "--seed", "5", "--out", str(tmp_path / "e.json")])
    out, err = capsys.readouterr()
    assert code == 2 and "No space left on device" in err and out == ""
    assert ((folder / "eval.json").read_bytes(), (tmp_path / "e.json").read_bytes()) == before
    assert not [p for p in [*folder.iterdir(), *tmp_path.iterdir()] if ".genzoo-" in p.name]  # no half file beside

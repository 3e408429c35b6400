"""rectified-flow: without a teacher it is flow matching; with one, reflow and K-step distillation on pairs of noise
and the teacher's samples, cached on disk (genzoo.teacher_pairs), resumed exactly, refused for teachers and options
that cannot work, and trained by two processes that agree on the pairs."""

import json
import os

import diffusers
import huggingface_hub
import pytest
import torch

import genzoo
from genzoo.config import RecipeError
from genzoo.methods import RectifiedFlowMethod
from genzoo.methods.rectified_flow import RectifiedFlowConfig
from genzoo.teacher_pairs import METADATA, load_pairs, pair_seed
from genzoo.testing import assert_resumes_exactly, assert_same_weights, run_training, tiny_args
from genzoo.training import main
from helpers import put_in_hub_cache, tiny_pipeline

pytestmark = pytest.mark.slow

#: Few pairs and teacher steps: these tests check behaviour, not quality.
PAIRS = ("--num_pairs", "64", "--teacher_steps", "4")


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    """A tiny flow-matching pipeline trained on moons: the teacher of every test here."""
    folder = tmp_path_factory.mktemp("teacher")
    run_training("flow-matching", "moons", folder)
    return folder


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    """genzoo's cache (the teacher pairs) in this test's own folder, never the home folder."""
    monkeypatch.setenv("GENZOO_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def reflow(teacher, out, *extra):
    run_training("rectified-flow", "moons", out, "--teacher", teacher, *PAIRS, *extra)
    return json.loads((out / "metrics.json").read_text())


def sampled(pipe, **kwargs):
    pipe.set_progress_bar_config(disable=True)
    return pipe(batch_size=5, generator=torch.Generator().manual_seed(0), output_type="pt", **kwargs).samples


# ------------------------------------------------------------------------------------------------ no teacher
def test_without_a_teacher_it_trains_exactly_like_flow_matching(tmp_path):
    run_training("flow-matching", "moons", tmp_path / "fm")
    run_training("rectified-flow", "moons", tmp_path / "rf")
    assert_same_weights(tmp_path / "fm", tmp_path / "rf", atol=0)
    metrics = json.loads((tmp_path / "rf" / "metrics.json").read_text())
    assert metrics["rectified_flow"].startswith("1-rectified") and "pairs_source" not in metrics


# ------------------------------------------------------------------------------------------------ reflow
def test_reflow_trains_saves_loads_and_its_pairs_are_the_teachers_samples(teacher, tmp_path, cache):
    metrics = reflow(teacher, tmp_path / "rf")
    assert (metrics["rectified_flow"], metrics["pairs_source"]) == ("reflow", "generated")
    assert (metrics["num_pairs"], metrics["teacher_steps"], metrics["teacher"]) == (64, 4, str(teacher))
    assert metrics["pair_generation_seconds"] >= 0
    for pipe in (genzoo.load_pipeline(tmp_path / "rf"),
                 diffusers.DiffusionPipeline.from_pretrained(tmp_path / "rf", trust_remote_code=True)):
        assert type(pipe) is genzoo.FlowMatchingPipeline
        assert torch.isfinite(sampled(pipe, num_inference_steps=2)).all()

    folder = cache / "teacher_pairs" / os.path.basename(metrics["pairs_dir"])
    assert folder.is_dir() and str(folder) == metrics["pairs_dir"]
    assert [p.name for p in folder.parent.iterdir()] == [folder.name]  # no temporary folder left behind
    noise, sample, meta = load_pairs(folder)
    assert noise.shape == sample.shape == (64, 2) and meta["shape"] == [2] and meta["seed"] == 0
    # x0: drawn from the run's seed; x1: exactly what the teacher's sampler makes of it at --teacher_steps
    expected_noise = torch.randn((64, 2), generator=torch.Generator().manual_seed(pair_seed(0)))
    assert torch.equal(noise, expected_noise)
    pipe = genzoo.load_pipeline(teacher)
    pipe.set_progress_bar_config(disable=True)
    assert torch.equal(sample, pipe(batch_size=64, latents=noise, num_inference_steps=4, output_type="pt").samples)


def test_a_second_run_loads_the_cache_and_trains_the_same_weights(teacher, tmp_path, cache):
    first = reflow(teacher, tmp_path / "first")
    second = reflow(teacher, tmp_path / "second")
    assert (first["pairs_source"], second["pairs_source"]) == ("generated", "cache")
    assert second["pairs_dir"] == first["pairs_dir"]
    assert second["pair_generation_seconds"] == first["pair_generation_seconds"]  # recorded when generated
    assert_same_weights(tmp_path / "first", tmp_path / "second", atol=0)
    # Other teacher steps, or another number of pairs, are other pairs.
    steps = reflow(teacher, tmp_path / "steps", "--teacher_steps", "3")
    fewer = reflow(teacher, tmp_path / "fewer", "--num_pairs", "32")
    assert steps["pairs_source"] == fewer["pairs_source"] == "generated"
    assert len({first["pairs_dir"], steps["pairs_dir"], fewer["pairs_dir"]}) == 3
    assert len(list((cache / "teacher_pairs").iterdir())) == 3


def test_a_hub_teacher_is_keyed_by_its_files_and_shares_the_cache_of_the_same_folder(teacher, tmp_path, monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    put_in_hub_cache(teacher, tmp_path / "hub-cache", "user/rf-teacher")
    from_folder = reflow(teacher, tmp_path / "folder")
    from_hub = reflow("user/rf-teacher", tmp_path / "hub")
    assert (from_folder["pairs_source"], from_hub["pairs_source"]) == ("generated", "cache")
    assert from_hub["teacher"] == "user/rf-teacher" and from_hub["pairs_dir"] == from_folder["pairs_dir"]
    assert_same_weights(tmp_path / "folder", tmp_path / "hub", atol=0)


def test_pairs_dir_caches_there_and_refuses_other_pairs(teacher, tmp_path, cache):
    pairs_dir = tmp_path / "my-pairs"
    metrics = reflow(teacher, tmp_path / "a", "--pairs_dir", pairs_dir)
    assert metrics["pairs_dir"] == str(pairs_dir) and (pairs_dir / METADATA).is_file()
    assert not cache.exists()
    noise, sample, _ = load_pairs(pairs_dir)
    for arrow in pairs_dir.glob("*.arrow"):  # a damaged cache is generated again, and replaced
        arrow.unlink()
    assert reflow(teacher, tmp_path / "damaged", "--pairs_dir", pairs_dir)["pairs_source"] == "generated"
    assert all(torch.equal(a, b) for a, b in zip(load_pairs(pairs_dir)[:2], (noise, sample)))
    with pytest.raises(ValueError, match=r"--pairs_dir .*my-pairs holds the pairs of another teacher or other options"):
        reflow(teacher, tmp_path / "b", "--pairs_dir", pairs_dir, "--teacher_steps", "3")


# ------------------------------------------------------------------------------------------------ distillation
def test_one_step_distillation_saves_a_flow_map_pipeline_that_jumps_x0_plus_v(teacher, tmp_path):
    metrics = reflow(teacher, tmp_path / "d", "--distill_steps", "1")
    assert (metrics["rectified_flow"], metrics["distill_steps"]) == ("distillation", 1)
    pipe = genzoo.load_pipeline(tmp_path / "d")
    assert type(pipe) is genzoo.FlowMapPipeline and type(pipe.scheduler) is genzoo.FlowMapEulerScheduler
    x0 = torch.randn((5, 2), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        by_hand = x0 + pipe.unet(x0, torch.tensor(0.0)).sample
    torch.testing.assert_close(sampled(pipe, latents=x0), by_hand, rtol=0, atol=1e-6)
    plain = diffusers.DiffusionPipeline.from_pretrained(tmp_path / "d", trust_remote_code=True)
    torch.testing.assert_close(sampled(plain, latents=x0), by_hand, rtol=0, atol=1e-6)


def test_distillation_trains_at_the_times_of_the_k_step_grid():
    method = RectifiedFlowMethod(RectifiedFlowConfig(teacher="unused", distill_steps=4, shift=3.0), data=None)
    expected = genzoo.FlowMapEulerScheduler(shift=3.0)
    expected.set_timesteps(4)
    assert torch.equal(method.distill_grid, expected.timesteps.float())
    unshifted = RectifiedFlowMethod(RectifiedFlowConfig(teacher="unused", distill_steps=4), data=None)
    assert unshifted.distill_grid.tolist() == [0.0, 250.0, 500.0, 750.0]


# ------------------------------------------------------------------------------------------------ resume
@pytest.mark.parametrize("extra", [[], ["--distill_steps", "2"]], ids=["reflow", "distill"])
def test_resume_with_a_teacher_is_exact(teacher, tmp_path, extra):
    full, stopped = assert_resumes_exactly("rectified-flow", tmp_path, "--teacher", str(teacher), *PAIRS, *extra,
                                           dataset="moons")
    sources = [json.loads((folder / "metrics.json").read_text())["pairs_source"] for folder in (full, stopped)]
    assert sources == ["generated", "cache"]


# ------------------------------------------------------------------------------------------------ refused
@pytest.mark.parametrize(
    "options,message",
    [
        ({"distill_steps": 2}, "--distill_steps 2 needs --teacher"),
        ({"num_pairs": 5}, "--num_pairs 5 needs --teacher"),
        ({"pairs_dir": "p"}, "--pairs_dir p needs --teacher"),
        ({"teacher": "t", "coupling": "ot"}, "--coupling ot with --teacher"),
        ({"teacher": "t", "conditioning": "class"}, "--conditioning class with --teacher"),
        ({"teacher": "t", "distill_steps": 1, "solver": "heun"}, "--solver heun with --distill_steps"),
        ({"teacher": "t", "distill_steps": 1, "prediction_type": "sample"}, "--prediction_type sample with --distill"),
        ({"teacher": "t", "distill_steps": 1, "time_sampling": "logit_normal"}, "--time_sampling logit_normal with"),
    ],
)
def test_options_that_cannot_work_are_refused(options, message):
    with pytest.raises(RecipeError, match=message):
        RectifiedFlowConfig(**options)


def test_distill_steps_without_a_teacher_is_one_error_line(tmp_path, capsys):
    assert main(tiny_args("rectified-flow", "moons", tmp_path, "--distill_steps", "2")) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("train.py: error: --distill_steps 2 needs --teacher")


@pytest.mark.parametrize(
    "family,data,message",
    [
        ("gan", "vector", r"is a GANPipeline; rectified flow needs a flow-matching or flow-map pipeline"),
        ("ddpm", "vector", r"is a DDPMPipeline; .* got 'diffusion'"),
        ("flow-matching", "image", r"makes samples of shape \(1, 8, 8\), and the data's samples have shape \(2,\)"),
    ],
)
def test_teachers_that_cannot_make_pairs_are_refused(family, data, message, tmp_path):
    tiny_pipeline(family, data).save_pretrained(tmp_path / "teacher")
    with pytest.raises(ValueError, match=message):
        run_training("rectified-flow", "moons", tmp_path / "out", "--teacher", tmp_path / "teacher", *PAIRS)


# ------------------------------------------------------------------------------------------------ two processes
@pytest.mark.subprocess
def test_two_processes_train_on_the_same_pairs(two_process_runs):
    """accelerate launch, 2 CPU processes (gloo): both find the same key, process 0 caches the pairs, and neither
    process's pairs differ from process 0's."""
    out, cache = two_process_runs.check("rectified-flow"), two_process_runs.cache
    assert "differed from process 0" not in two_process_runs.stderr("rectified-flow")
    metrics = json.loads((out / "metrics.json").read_text())
    assert (metrics["num_processes"], metrics["global_step"], metrics["pairs_source"]) == (2, 3, "generated")
    assert [p.name for p in (cache / "teacher_pairs").iterdir()] == [os.path.basename(metrics["pairs_dir"])]
    assert genzoo.load_pipeline(out)(batch_size=4, output_type="np").samples.shape == (4, 2)

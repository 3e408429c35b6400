"""Loading by Hub id from a huggingface_hub cache laid out on disk, and the security rules: safetensors only, no code
from a repository runs unless the caller says so."""

import json
import sys

import diffusers
import huggingface_hub
import pytest
import torch
from helpers import put_in_hub_cache, samples_of, tiny_pipeline

import genzoo
from genzoo.pipelines.loading import PipelineLoadError


@pytest.fixture
def cached_repo(tmp_path):
    """A flow-matching pipeline saved, then placed in a Hub cache as user/fm-moons."""
    pipe = tiny_pipeline("flow-matching", "vector")
    pipe.save_pretrained(tmp_path / "saved")
    cache = tmp_path / "hub-cache"
    commit = put_in_hub_cache(tmp_path / "saved", cache, "user/fm-moons")
    return pipe, cache, commit


def test_hub_id_loads_from_cache_like_the_local_pipeline(cached_repo):
    pipe, cache, commit = cached_repo
    expected = samples_of(pipe)
    for loaded in (
        genzoo.load_pipeline("user/fm-moons", cache_dir=cache),
        genzoo.FlowMatchingPipeline.from_pretrained("user/fm-moons", cache_dir=cache, local_files_only=True),
        genzoo.load_pipeline("user/fm-moons", cache_dir=cache, revision=commit),
    ):
        loaded.set_progress_bar_config(disable=True)
        assert type(loaded) is genzoo.FlowMatchingPipeline
        assert torch.equal(samples_of(loaded), expected)
    # Plain Diffusers loads the downloaded snapshot when it may run the repo's genzoo_hub.py.
    snapshot = huggingface_hub.snapshot_download("user/fm-moons", cache_dir=cache, local_files_only=True)
    plain = diffusers.DiffusionPipeline.from_pretrained(snapshot, trust_remote_code=True)
    plain.set_progress_bar_config(disable=True)
    assert type(plain) is genzoo.FlowMatchingPipeline and torch.equal(samples_of(plain), expected)


def test_revisions_pick_their_own_weights(tmp_path):
    first, second = tiny_pipeline("gan", "vector", seed=0), tiny_pipeline("gan", "vector", seed=1)
    first.save_pretrained(tmp_path / "v1")
    second.save_pretrained(tmp_path / "v2")
    cache = tmp_path / "cache"
    commit1 = put_in_hub_cache(tmp_path / "v1", cache, "user/gan")
    put_in_hub_cache(tmp_path / "v2", cache, "user/gan")  # main now points at the second commit
    assert torch.equal(samples_of(genzoo.load_pipeline("user/gan", cache_dir=cache)), samples_of(second))
    old = genzoo.load_pipeline("user/gan", cache_dir=cache, revision=commit1)
    assert torch.equal(samples_of(old), samples_of(first))


def test_missing_from_cache_while_offline_is_a_clear_error(tmp_path):
    assert huggingface_hub.constants.HF_HUB_OFFLINE  # tests run offline (tests/conftest.py)
    with pytest.raises(PipelineLoadError, match=r"user/absent .*not in the local Hub cache.*HF_HUB_OFFLINE=1"):
        genzoo.load_pipeline("user/absent", cache_dir=tmp_path)
    with pytest.raises(PipelineLoadError, match=r"revision v2.*not in the local Hub cache"):
        genzoo.load_pipeline("user/absent", cache_dir=tmp_path, revision="v2")


@pytest.mark.parametrize(
    "name,message",
    [
        ("./no/such/folder", r"No such folder: ./no/such/folder"),
        ("/definitely/not/here", r"No such folder"),
        ("not a valid id!", r"neither an existing folder nor a valid Hub repo id"),
    ],
)
def test_bad_names(name, message):
    with pytest.raises(PipelineLoadError, match=message):
        genzoo.load_pipeline(name)


def test_folder_without_model_index(tmp_path):
    (tmp_path / "unet").mkdir()
    with pytest.raises(PipelineLoadError, match="has no model_index.json"):
        genzoo.load_pipeline(tmp_path)
    (tmp_path / "model_index.json").write_text("{oops")
    with pytest.raises(PipelineLoadError, match="model_index.json is not valid JSON"):
        genzoo.load_pipeline(tmp_path)


def test_pickle_only_weights_are_refused_unless_opted_in(tmp_path):
    pipe = tiny_pipeline("ddpm", "vector")
    pipe.save_pretrained(tmp_path)
    for f in (tmp_path / "unet").glob("*.safetensors"):
        f.unlink()
    pipe.unet.save_pretrained(tmp_path / "unet", safe_serialization=False)  # diffusion_pytorch_model.bin
    assert (tmp_path / "unet" / "diffusion_pytorch_model.bin").exists()
    with pytest.raises(PipelineLoadError, match=r"'unet' has only pickled weights \(diffusion_pytorch_model.bin\).*allow_pickle=True"):
        genzoo.load_pipeline(tmp_path)
    loaded = genzoo.load_pipeline(tmp_path, allow_pickle=True)
    loaded.set_progress_bar_config(disable=True)
    assert torch.equal(samples_of(loaded), samples_of(pipe))


def test_pickles_from_the_hub_are_not_even_downloaded(tmp_path):
    """With the real Hub the download itself skips *.bin/*.pt/*.ckpt unless allow_pickle=True; here the cache has
    only pickles for one component, so loading stops at the same clear refusal."""
    pipe = tiny_pipeline("gan", "vector")
    pipe.save_pretrained(tmp_path / "saved")
    for f in (tmp_path / "saved" / "generator").glob("*.safetensors"):
        f.unlink()
    pipe.generator.save_pretrained(tmp_path / "saved" / "generator", safe_serialization=False)
    put_in_hub_cache(tmp_path / "saved", tmp_path / "cache", "user/pickled")
    with pytest.raises(PipelineLoadError, match="only pickled weights"):
        genzoo.load_pipeline("user/pickled", cache_dir=tmp_path / "cache")


def test_repository_code_never_runs_without_trust(tmp_path):
    """A repo whose genzoo_hub.py does something else: genzoo's loader reads names and never executes the file;
    plain Diffusers refuses it without trust_remote_code=True."""
    tiny_pipeline("flow-matching", "vector").save_pretrained(tmp_path)
    marker = tmp_path / "executed.txt"
    payload = f"open({str(marker)!r}, 'w').write('ran')\nfrom genzoo import FlowMatchingPipeline, MLPDenoiser, FlowMatchEulerScheduler\n"
    for shim in tmp_path.rglob("genzoo_hub.py"):
        shim.write_text(payload)
    genzoo.load_pipeline(tmp_path)
    assert not marker.exists()
    with pytest.raises(ValueError, match="trust_remote_code=True"):
        diffusers.DiffusionPipeline.from_pretrained(tmp_path)
    assert not marker.exists()


def test_unknown_component_library_is_not_imported(tmp_path):
    tiny_pipeline("gan", "vector").save_pretrained(tmp_path)
    index = json.loads((tmp_path / "model_index.json").read_text())
    index["generator"] = ["some_module_named_by_a_repo", "Generator"]
    (tmp_path / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(PipelineLoadError, match=r"'generator' is a some_module_named_by_a_repo.Generator.*plugin"):
        genzoo.load_pipeline(tmp_path)
    assert "some_module_named_by_a_repo" not in sys.modules


def test_folder_written_by_plain_diffusers_loads(tmp_path):
    """A genzoo pipeline saved through DiffusionPipeline.save_pretrained (module paths, string class name)."""
    pipe = tiny_pipeline("ddpm", "vector")
    diffusers.DiffusionPipeline.save_pretrained(pipe, tmp_path)
    index = json.loads((tmp_path / "model_index.json").read_text())
    assert index["unet"] == ["genzoo.models.mlp_denoiser", "MLPDenoiser"] and index["_class_name"] == "DDPMPipeline"
    loaded = genzoo.load_pipeline(tmp_path)
    loaded.set_progress_bar_config(disable=True)
    assert type(loaded) is genzoo.DDPMPipeline and torch.equal(samples_of(loaded), samples_of(pipe))

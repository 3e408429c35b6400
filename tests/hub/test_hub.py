"""Sharing on the Hub, end to end against the Hub-compatible server of tests/hub_server.py (the `hub` fixture):
push, load by id with genzoo and with plain Diffusers, revisions, offline use, tokens, model cards, the trainer."""

import ast
import shutil

import diffusers
import huggingface_hub
import pytest
import torch
from helpers import FAMILIES, samples_of, text_pipeline, tiny_pipeline
from huggingface_hub import ModelCard
from huggingface_hub.errors import HfHubHTTPError

import genzoo
from genzoo.cli import main
from genzoo.conditioning import set_id2label
from genzoo.hub import conditioning_of_folder
from genzoo.pipelines.loading import PipelineLoadError
from genzoo.testing import run_training

pytestmark = pytest.mark.slow


@pytest.fixture
def trained(tmp_path):
    """A flow-matching pipeline trained for a few steps on moons (the trainer's output folder)."""
    run_training("flow-matching", "moons", tmp_path / "run")
    return tmp_path / "run"


def loaded(pipe):
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_push_then_load_by_id_with_genzoo_and_plain_diffusers(hub, trained):
    local = loaded(genzoo.load_pipeline(trained))
    url = local.push_to_hub("user/fm-moons", token=hub.token)
    assert "user/fm-moons" in url
    shutil.rmtree(hub.cache_dir, ignore_errors=True)  # nothing cached: both loads download
    by_genzoo = loaded(genzoo.load_pipeline("user/fm-moons"))
    by_diffusers = loaded(diffusers.DiffusionPipeline.from_pretrained("user/fm-moons", trust_remote_code=True))
    assert type(by_genzoo) is type(by_diffusers) is genzoo.FlowMatchingPipeline
    expected = samples_of(local)
    assert torch.equal(samples_of(by_genzoo), expected) and torch.equal(samples_of(by_diffusers), expected)
    files = set(huggingface_hub.list_repo_files("user/fm-moons"))
    assert {"model_index.json", "genzoo_hub.py", "unet/genzoo_hub.py", "scheduler/genzoo_hub.py", "README.md",
            "unet/diffusion_pytorch_model.safetensors"} <= files


def test_a_second_push_is_a_new_commit_and_revisions_load_old_weights(hub, tmp_path):
    first, second = (genzoo.GANPipeline(generator=genzoo.MLPGenerator(hidden_dim=16)) for _ in range(2))
    first.push_to_hub("user/gan", token=hub.token)
    commit1 = huggingface_hub.model_info("user/gan").sha
    second.push_to_hub("user/gan", token=hub.token, commit_message="retrained")
    commit2 = huggingface_hub.model_info("user/gan").sha
    assert commit1 != commit2
    assert torch.equal(samples_of(genzoo.load_pipeline("user/gan")), samples_of(second))
    assert torch.equal(samples_of(genzoo.load_pipeline("user/gan", revision=commit1)), samples_of(first))
    # a push to a branch leaves main alone
    third = genzoo.GANPipeline(generator=genzoo.MLPGenerator(hidden_dim=16))
    third.push_to_hub("user/gan", token=hub.token, revision="experiment")
    assert huggingface_hub.model_info("user/gan").sha == commit2
    assert torch.equal(samples_of(genzoo.load_pipeline("user/gan", revision="experiment")), samples_of(third))


def test_offline_after_one_download(hub, trained, monkeypatch):
    genzoo.load_pipeline(trained).push_to_hub("user/fm", token=hub.token)
    online = genzoo.load_pipeline("user/fm")  # fills the cache
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    hub.server.stop()  # nothing could be reached now anyway
    offline = genzoo.load_pipeline("user/fm")
    assert torch.equal(samples_of(offline), samples_of(online))
    shutil.rmtree(hub.cache_dir)
    with pytest.raises(PipelineLoadError, match=r"user/fm .*not in the local Hub cache.*HF_HUB_OFFLINE=1"):
        genzoo.load_pipeline("user/fm")
    hub.server.start()  # let the fixture stop it cleanly


def test_wrong_tokens_and_private_repos(hub, trained, capsys):
    pipe = genzoo.load_pipeline(trained)
    with pytest.raises(HfHubHTTPError, match="Invalid credentials"):
        pipe.push_to_hub("user/fm", token="hf_wrong")
    code = main(["push", str(trained), "user/fm", "--token", "hf_wrong"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("genzoo: error: the Hub refused the push to user/fm") and len(err.splitlines()) == 1
    pipe.push_to_hub("user/secret", token=hub.token, private=True)
    with pytest.raises(PipelineLoadError, match="not found, or it is private and no valid token was given"):
        genzoo.load_pipeline("user/secret")
    assert type(genzoo.load_pipeline("user/secret", token=hub.token)) is genzoo.FlowMatchingPipeline


def test_model_card_metadata_and_body(hub, trained):
    assert main(["push", str(trained), "user/fm-card", "--token", hub.token]) == 0
    card = ModelCard.load("user/fm-card")
    data = card.data.to_dict()
    assert data["library_name"] == "diffusers" and data["license"] == "apache-2.0"
    assert {"genzoo", "flow-matching", "vector-data"} <= set(data["tags"])
    assert data["datasets"] == ["moons"] and "pipeline_tag" not in data  # 2-D points: not an image task
    (result,) = data["model-index"][0]["results"]
    assert result["metrics"][0]["type"] == "train_loss" and result["dataset"]["name"] == "moons"
    assert "![Samples from this model](samples.png)" in card.text
    assert 'genzoo.load_pipeline("user/fm-card")' in card.text and "trust_remote_code=True" in card.text
    assert "## Training recipe" in card.text and "method: flow-matching" in card.text
    files = set(huggingface_hub.list_repo_files("user/fm-card"))
    assert {"samples.png", "metrics.json", "recipe.yaml"} <= files
    assert not any(f.startswith(("checkpoints/", "logs/", "samples/")) for f in files)


def test_a_card_writes_only_hub_ids_and_label_names_as_data(trained, tmp_path):
    """The card's code holds the repo id and a class-conditional model's label names: an id that is not a Hub id is
    refused, and label names from the folder (anyone's) are written as Python literals, never pasted as code."""
    from genzoo.hub import _usage_call, make_model_card

    with pytest.raises(ValueError, match="is not a Hub id"):
        make_model_card(trained, 'user/x"); import os; ("')
    name = 'seven"]); import os; (["'
    line = _usage_call("class", {0: name, 1: "one\nimport os"})
    assert "\n" not in line  # the label names after the code are a one-line comment
    (statement,) = ast.parse(line).body  # one assignment: nothing else runs
    labels = {k.arg: k.value for k in statement.value.keywords}["class_labels"]
    assert ast.literal_eval(labels.left) == [name]


def test_image_pipeline_card_has_the_image_task(hub, tmp_path):
    run_training("gan", "digits", tmp_path / "gan")
    genzoo.load_pipeline(tmp_path / "gan").push_to_hub("user/gan-digits", token=hub.token)
    assert ModelCard.load("user/gan-digits").data.pipeline_tag == "unconditional-image-generation"


def test_trainer_pushes_at_the_end(hub, tmp_path):
    run_training("vae", "moons", tmp_path / "vae", "--push_to_hub", "--hub_model_id", "user/vae-moons",
                 "--hub_token", hub.token, "--hub_private_repo")
    info = huggingface_hub.model_info("user/vae-moons", token=hub.token)
    assert info.private
    pipe = genzoo.load_pipeline("user/vae-moons", token=hub.token)
    assert torch.equal(samples_of(pipe), samples_of(genzoo.load_pipeline(tmp_path / "vae")))


def test_genzoo_sample_by_repo_id(hub, trained, tmp_path, capsys):
    genzoo.load_pipeline(trained).push_to_hub("user/fm", token=hub.token)
    assert main(["sample", "user/fm", "--num-samples", "8", "--steps", "3", "--out", str(tmp_path / "x.npy")]) == 0
    assert "Wrote an array of shape (8, 2)" in capsys.readouterr().out


def test_genzoo_eval_by_repo_id_reads_the_recipe_from_the_repo(hub, trained, tmp_path, capsys):
    assert main(["push", str(trained), "user/fm-eval", "--token", hub.token]) == 0
    capsys.readouterr()
    code = main(["eval", "user/fm-eval", "--num-samples", "50", "--steps", "2", "--likelihood-steps", "5",
                 "--out", str(tmp_path / "e.json")])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert '"dataset": "moons"' in out and (tmp_path / "e.json").is_file()


def class_conditional_pipelines():
    """One tiny class-conditional pipeline per labelled component: generator (GAN), vae (VAE), unet (flow matching)."""
    torch.manual_seed(0)
    generator = genzoo.MLPGenerator(hidden_dim=16, num_class_embeds=3, class_embed_dim=4)
    vae = genzoo.MLPVAE(hidden_dim=16, num_class_embeds=3)
    unet = genzoo.MLPDenoiser(hidden_dim=16, num_layers=2, time_embed_dim=16, num_class_embeds=4)
    for model in (generator, vae, unet):
        set_id2label(model, {0: "a", 1: "b", 2: "c"})
    return [genzoo.GANPipeline(generator=generator), genzoo.VAEPipeline(vae=vae),
            genzoo.FlowMatchingPipeline(unet=unet, scheduler=genzoo.FlowMatchEulerScheduler())]


def test_a_saved_folder_and_the_pipeline_loaded_from_it_agree_on_the_conditioning(tmp_path):
    cases = [(tiny_pipeline(family, "vector"), "none") for family in FAMILIES]
    cases += [(pipe, "class") for pipe in class_conditional_pipelines()]
    cases += [(text_pipeline(), "text")]
    for i, (pipe, expected) in enumerate(cases):
        folder = tmp_path / str(i)
        pipe.save_pretrained(folder)
        loaded = genzoo.load_pipeline(folder)
        id2label = {0: "a", 1: "b", 2: "c"} if expected == "class" else None
        assert conditioning_of_folder(folder) == (loaded.conditioning, loaded.id2label) == (expected, id2label), i
        assert (pipe.conditioning, pipe.id2label) == (expected, id2label), i
    (tmp_path / "0" / "model_index.json").write_text('{"_class_name": "NoSuchPipeline"}')
    with pytest.raises(PipelineLoadError, match="No genzoo pipeline named 'NoSuchPipeline'"):
        conditioning_of_folder(tmp_path / "0")

"""Folders and arguments from a hostile or careless user (issue 13: nothing lost, nothing run, nothing silently
wrong): every broken pipeline folder is a one-line PipelineLoadError naming the file, component or value; every bad
sampling request a one-line ValueError before anything large is allocated; a failed save loses nothing. Issue 23:
nothing is read through a link leading outside the folder, no device or FIFO is opened, and what a weights header
claims does not raise the budget of the meta-device build."""

import builtins
import io
import json
import math
import os
import re
import shutil
import threading
import time
from pathlib import Path

import pytest
import torch
from helpers import ROOT, put_in_hub_cache, samples_of, tiny_pipeline, tiny_unet
from safetensors.torch import load_file, save_file

import genzoo
from genzoo.cli import main as cli
from genzoo.model_index import PipelineLoadError, component_configs, component_entries, folder_root, read_json_object
from genzoo.pipelines import loading, memory, untrusted

ZOO = ROOT / "pipelines"
WEIGHTS = "diffusion_pytorch_model.safetensors"


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """``saved(name)``: a fresh copy of a tiny saved pipeline: ddpm-vector, ddpm-image, gan-vector, vae-vector."""
    root = tmp_path_factory.mktemp("saved")
    for family, data in [("ddpm", "vector"), ("ddpm", "image"), ("gan", "vector"), ("vae", "vector")]:
        tiny_pipeline(family, data).save_pretrained(root / f"{family}-{data}")
    counter = iter(range(10**6))

    def copy(name: str) -> Path:
        return Path(shutil.copytree(root / name, root.parent / f"{name}-{next(counter)}-{os.getpid()}"))

    return copy


def refused(folder, match, **kwargs) -> str:
    """Loading ``folder`` raises a one-line PipelineLoadError matching ``match``; returns the message."""
    with pytest.raises(PipelineLoadError, match=match) as info:
        genzoo.load_pipeline(folder, **kwargs)
    message = str(info.value)
    assert "\n" not in message, message
    return message


def cli_refuses(capsys, argv, match) -> str:
    """``genzoo <argv>`` exits with 2 and one stderr line matching ``match``."""
    capsys.readouterr()
    assert cli([str(a) for a in argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("genzoo: error: "), err
    assert re.search(match, err[0]), err[0]
    return err[0]


def edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)  # changes data in place
    path.write_text(json.dumps(data))


# ------------------------------------------------------------------------------------- 1. model_index.json itself
@pytest.mark.parametrize("content", ["[1, 2]", "3", '"unet"', "null"])
def test_model_index_that_is_not_an_object(saved, content, capsys):
    folder = saved("gan-vector")
    (folder / "model_index.json").write_text(content)
    refused(folder, r"model_index.json must hold a JSON object")
    cli_refuses(capsys, ["sample", folder, "--out", folder / "x.npy"], r"model_index.json must hold a JSON object")


@pytest.mark.parametrize(
    "entry", [["diffusers"], ["diffusers", "UNet2DModel", "x"], ["diffusers", 5], [{"a": 1}, "UNet2DModel"], []],
    ids=["short", "long", "number", "dict", "empty"],
)
def test_malformed_component_entry_is_named(saved, entry):
    folder = saved("ddpm-vector")
    edit_json(folder / "model_index.json", lambda index: index.update(unet=entry))
    refused(folder, r"model_index.json entry 'unet' must be \[\"library\", \"ClassName\"\]")


@pytest.mark.parametrize("value", ["oops", {"library": "diffusers"}, 7])
def test_required_component_that_is_not_an_entry(saved, value):
    folder = saved("ddpm-vector")
    edit_json(folder / "model_index.json", lambda index: index.update(unet=value))
    refused(folder, r"entry 'unet' must be")


def test_required_component_recorded_absent_or_missing(saved, capsys):
    folder = saved("ddpm-vector")
    edit_json(folder / "model_index.json", lambda index: index.update(unet=[None, None]))
    refused(folder, r"records component 'unet' as absent \(\[null, null\]\), but DDPMPipeline requires it")
    cli_refuses(capsys, ["sample", folder, "--out", folder / "x.npy"], "'unet' as absent")
    # A replacement passed by the caller makes up for it.
    loaded = genzoo.DDPMPipeline.from_pretrained(folder, unet=genzoo.MLPDenoiser(hidden_dim=16, num_layers=2,
                                                                                 time_embed_dim=16))
    assert isinstance(loaded.unet, genzoo.MLPDenoiser)
    edit_json(folder / "model_index.json", lambda index: index.pop("scheduler"))
    refused(folder, r"no entry for component 'scheduler', which DDPMPipeline requires")
    # Optional components may be absent.
    folder = saved("ddpm-vector")
    edit_json(folder / "model_index.json", lambda index: [index.pop("tokenizer"), index.pop("text_encoder")])
    assert type(genzoo.load_pipeline(folder)) is genzoo.DDPMPipeline


def test_optional_component_with_a_malformed_entry(saved):
    folder = saved("ddpm-vector")
    edit_json(folder / "model_index.json", lambda index: index.update(tokenizer="oops"))
    refused(folder, r"model_index.json entry 'tokenizer' must be .* got 'oops'")
    edit_json(folder / "model_index.json", lambda index: index.update(tokenizer=None))  # null: absent
    assert genzoo.load_pipeline(folder).tokenizer is None


def test_component_the_pipeline_does_not_take(saved):
    folder = saved("gan-vector")
    shutil.copytree(folder / "generator", folder / "extra")
    edit_json(folder / "model_index.json", lambda index: index.update(extra=["genzoo_hub", "MLPGenerator"]))
    refused(folder, r"records a component 'extra' \(genzoo_hub.MLPGenerator\) that GANPipeline does not take")


# ------------------------------------------------------------------------------------- 2. component names
BAD_NAMES = ["../outside", "a/b", "/abs/olute", ".", "..", "", "a\\b", "~", "unet/../../outside"]


@pytest.fixture
def reads(monkeypatch):
    """Paths opened for reading (builtins.open and io.open, which pathlib uses)."""
    opened = []
    for owner in (builtins, io):
        original = owner.open

        def recording(file, mode="r", *args, _original=original, **kwargs):
            if "r" in mode and not isinstance(file, int):
                opened.append(os.fspath(file))
            return _original(file, mode, *args, **kwargs)

        monkeypatch.setattr(owner, "open", recording)
    return opened


@pytest.mark.parametrize("name", BAD_NAMES)
def test_component_names_that_are_not_folder_names_are_refused_before_reading(saved, name, reads, tmp_path):
    folder = saved("gan-vector")
    outside = folder.parent / "outside"
    outside.mkdir(exist_ok=True)
    (outside / "config.json").write_text('{"secret": 1}')
    index = json.loads((folder / "model_index.json").read_text())
    index[name] = index.pop("generator")
    (folder / "model_index.json").write_text(json.dumps(index))
    reads.clear()
    message = refused(folder, r"names a component .*must be a plain folder name")
    assert repr(name) in message
    with pytest.raises(PipelineLoadError, match="plain folder name"):
        component_configs(folder, index)
    with pytest.raises(PipelineLoadError, match="plain folder name"):
        component_entries(index)
    assert [p for p in reads if "outside" in p or "config.json" in p] == []


def test_cli_refuses_a_path_like_component_name(saved, capsys):
    folder = saved("gan-vector")
    edit_json(folder / "model_index.json", lambda index: index.update({"../outside": index.pop("generator")}))
    cli_refuses(capsys, ["sample", folder, "--out", folder / "x.npy"], r"'\.\./outside'.*plain folder name")


# ------------------------------------------------------------------------------------- 3. component files
def test_missing_component_folder(saved, capsys):
    folder = saved("ddpm-vector")
    shutil.rmtree(folder / "unet")
    message = refused(folder, r"Component 'unet' \(genzoo_hub.MLPDenoiser in model_index.json\): its folder "
                              r".*unet is missing")
    assert str(folder / "unet") in message
    cli_refuses(capsys, ["sample", folder, "--out", folder / "x.npy"], r"folder .*unet is missing")
    folder = saved("ddpm-vector")
    shutil.rmtree(folder / "scheduler")
    refused(folder, r"Component 'scheduler'.*its folder .*scheduler is missing")


def test_config_without_weights_names_the_safetensors_file(saved, capsys):
    folder = saved("ddpm-vector")
    (folder / "unet" / WEIGHTS).unlink()
    message = refused(folder, rf"Component 'unet': .*has no weights; expected {WEIGHTS}")
    assert "pytorch_model.bin" not in message.replace(WEIGHTS, "")
    cli_refuses(capsys, ["sample", folder, "--out", folder / "x.npy"], WEIGHTS)


def _rewrite_weights(folder: Path, component: str, change) -> None:
    path = folder / component / WEIGHTS
    tensors = load_file(path)
    change(tensors)
    save_file(tensors, path)


def test_missing_extra_and_misshapen_tensors_are_named(saved, capsys):
    folder = saved("ddpm-vector")
    _rewrite_weights(folder, "unet", lambda t: [t.pop("proj_out.weight"), t.pop("proj_out.bias")])
    refused(folder, r"Component 'unet': the tensors in .*do not match the MLPDenoiser .*2 missing \(proj_out.bias, "
                    r"proj_out.weight\)")
    cli_refuses(capsys, ["sample", folder, "--out", folder / "x.npy"], r"2 missing \(proj_out.bias, proj_out.weight\)")

    folder = saved("ddpm-vector")
    _rewrite_weights(folder, "unet", lambda t: t.update({"stowaway": torch.zeros(3)}))
    refused(folder, r"Component 'unet': .*1 unexpected \(stowaway\)")

    folder = saved("ddpm-vector")
    _rewrite_weights(folder, "unet", lambda t: t.update({"proj_out.weight": torch.zeros(2, 17)}))
    refused(folder, r"1 of the wrong shape \(proj_out.weight is \(2, 17\), expected \(2, 16\)\)")

    folder = saved("ddpm-image")  # a Diffusers UNet2DModel: many names, shown a few then counted
    _rewrite_weights(folder, "unet", lambda t: [t.pop(k) for k in list(t)[:9]])
    refused(folder, r"9 missing \([^)]* and 4 more\)")


def test_integer_tensors_where_the_model_has_floats(saved):
    folder = saved("ddpm-vector")
    _rewrite_weights(folder, "unet", lambda t: t.update({"proj_out.weight": t["proj_out.weight"].to(torch.int32)}))
    refused(folder, r"1 of the wrong dtype \(proj_out.weight is I32, expected floating point\)")


def test_sharded_weights_are_checked_like_one_file(saved):
    folder = saved("ddpm-vector")
    tensors = load_file(folder / "unet" / WEIGHTS)
    (folder / "unet" / WEIGHTS).unlink()
    names = sorted(tensors)
    save_file({k: tensors[k] for k in names[:10]}, folder / "unet" / "part-1.safetensors")
    save_file({k: tensors[k] for k in names[10:]}, folder / "unet" / "part-2.safetensors")
    index = {"metadata": {}, "weight_map": {k: "part-1.safetensors" if i < 10 else "part-2.safetensors"
                                            for i, k in enumerate(names)}}
    index_path = folder / "unet" / "diffusion_pytorch_model.safetensors.index.json"
    index_path.write_text(json.dumps(index))
    pipe = genzoo.load_pipeline(folder)
    assert torch.isfinite(samples_of(pipe)).all()
    (folder / "unet" / "part-2.safetensors").unlink()
    refused(folder, r"Component 'unet': shard .*part-2.safetensors \(listed in .*index.json\) is missing")
    for shard in ("../part-1.safetensors", "/etc/passwd", 3):
        index["weight_map"][names[0]] = shard
        index_path.write_text(json.dumps(index))
        refused(folder, r"names a shard that is not a file name in the component folder")


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty", "huge-header", "bad-offsets"])
def test_corrupt_safetensors_names_the_file(saved, damage):
    folder = saved("gan-vector")
    path = folder / "generator" / WEIGHTS
    data = path.read_bytes()
    length = int.from_bytes(data[:8], "little")
    if damage == "truncated":
        data = data[: len(data) - 100]
    elif damage == "garbage":
        data = b"\x00\x01not a safetensors file at all" * 10
    elif damage == "empty":
        data = b""
    elif damage == "huge-header":
        data = (2**40).to_bytes(8, "little") + data[8:]
    else:
        header = json.loads(data[8 : 8 + length])
        name = next(k for k in header if k != "__metadata__")
        header[name]["data_offsets"][1] += 4
        raw = json.dumps(header).encode().ljust(length)
        data = len(raw).to_bytes(8, "little") + raw + data[8 + length :]
    path.write_bytes(data)
    message = refused(folder, r"is not a valid safetensors file")
    assert str(path) in message


@pytest.mark.parametrize("content,why", [("{oops", "is not valid JSON"), ("[1, 2]", "must hold a JSON object"),
                                         ("\xff\xfe", "")])
def test_broken_config_json_names_the_file(saved, content, why):
    folder = saved("ddpm-vector")
    (folder / "unet" / "config.json").write_bytes(content.encode("latin-1"))
    message = refused(folder, r"Component 'unet': .*unet/config.json " + why)
    assert str(folder / "unet" / "config.json") in message
    folder = saved("ddpm-vector")
    (folder / "scheduler" / "scheduler_config.json").write_text(content)
    refused(folder, r"Component 'scheduler': .*scheduler_config.json")


def test_pickle_only_folders_still_load_when_allowed(saved):
    folder = saved("gan-vector")
    pipe = genzoo.load_pipeline(folder)
    (folder / "generator" / WEIGHTS).unlink()
    pipe.generator.save_pretrained(folder / "generator", safe_serialization=False)
    refused(folder, r"only pickled weights")
    loaded = genzoo.load_pipeline(folder, allow_pickle=True)
    assert torch.equal(samples_of(loaded), samples_of(pipe))


def test_allow_pickle_still_loads_the_checked_safetensors_file(saved):
    """With both files, allow_pickle=True loads the safetensors file the checks read, not the pickle beside it."""
    folder = saved("gan-vector")
    expected = samples_of(genzoo.load_pipeline(folder))
    other = folder.parent / f"{folder.name}-other"
    tiny_pipeline("gan", "vector", seed=5).generator.save_pretrained(other, safe_serialization=False)
    shutil.copy(other / "diffusion_pytorch_model.bin", folder / "generator")
    assert torch.equal(samples_of(genzoo.load_pipeline(folder, allow_pickle=True)), expected)


# ------------------------------------------------------------------------------------- 4. config against weights
@pytest.mark.parametrize("key,value", [("num_layers", 10_000_000), ("hidden_dim", 10**9), ("sample_size", -(10**12)),
                                       ("time_embed_scale", float("nan")), ("hidden_dim", float("inf"))])
def test_absurd_config_numbers_are_refused_before_building(saved, key, value, capsys):
    folder = saved("ddpm-vector")
    edit_json(folder / "unet" / "config.json", lambda config: config.update({key: value}))
    start = time.perf_counter()
    refused(folder, rf"Component 'unet': config.json has {key} = ")
    assert time.perf_counter() - start < 5
    cli_refuses(capsys, ["sample", folder, "--out", folder / "x.npy"], rf"{key} = ")


def test_config_that_builds_far_more_than_the_weights_stops_early(saved):
    """Below the number rule's 2**20 floor, the meta-device build has a budget of registered modules and tensors."""
    folder = saved("ddpm-vector")
    edit_json(folder / "unet" / "config.json", lambda config: config.update(num_layers=500_000))
    start = time.perf_counter()
    refused(folder, r"builds a MLPDenoiser of more than \d+ modules and tensors, while its weights hold 26 tensors")
    assert time.perf_counter() - start < 5


@pytest.mark.parametrize("change,match", [
    ({"hidden_dim": 32}, r"of the wrong shape \(.*expected \(32"),
    ({"num_layers": 3}, r"8 missing \(blocks.2.emb_proj.bias, .* and 3 more\)"),
    ({"num_class_embeds": 5}, r"2 missing|1 missing \(class_embedding.weight\)"),
    ({"time_embed_dim": 7}, r"does not build a MLPDenoiser: ValueError: `time_embed_dim` must be even"),
    ({"hidden_dim": "wide"}, r"does not build a MLPDenoiser"),
])
def test_config_that_does_not_match_the_weights(saved, change, match):
    folder = saved("ddpm-vector")
    edit_json(folder / "unet" / "config.json", lambda config: config.update(change))
    refused(folder, match)


def test_scheduler_config_numbers_are_bounded(saved):
    folder = saved("ddpm-vector")
    edit_json(folder / "scheduler" / "scheduler_config.json", lambda config: config.update(num_train_timesteps=10**10))
    refused(folder, r"Component 'scheduler': scheduler_config.json has num_train_timesteps = 10000000000")


def _zoo_and_text_folders(tmp_path):
    folders = sorted(p for p in ZOO.iterdir() if (p / "model_index.json").is_file())
    from helpers import text_pipeline

    text_pipeline("ddpm").save_pretrained(tmp_path / "text-ddpm")
    return folders + [tmp_path / "text-ddpm"]


@pytest.mark.slow
def test_the_checks_accept_every_zoo_pipeline_and_a_text_pipeline(tmp_path):
    """The number rule and the meta-device comparison on real configs: the zoo's pipelines (Diffusers' UNet2DModel
    and AutoencoderKL, genzoo's MLP and DCGAN models) and a text pipeline (UNet2DConditionModel, CLIPTextModel)."""
    folders = _zoo_and_text_folders(tmp_path)
    assert len(folders) >= 9
    for folder in folders:
        pipe = genzoo.load_pipeline(folder)
        assert type(pipe).__name__ in json.loads((folder / "model_index.json").read_text())["_class_name"][1]


# ------------------------------------------------------------------------------------- 5. non-finite weights
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused_at_load(saved, value, capsys):
    folder = saved("ddpm-vector")

    def poison(tensors):
        tensors["proj_in.weight"][0, :2] = value
        tensors["proj_out.bias"][0] = value

    _rewrite_weights(folder, "unet", poison)
    refused(folder, r"Component 'unet': 2 of its 26 floating-point tensors hold 3 non-finite values \(NaN or inf; "
                    r"proj_in.weight, proj_out.bias\)")
    cli_refuses(capsys, ["sample", folder, "--out", folder / "x.npy"], "non-finite")


# ------------------------------------------------------------------------------------- 6. memory
@pytest.mark.parametrize("name", ["ddpm-vector", "ddpm-image", "gan-vector", "vae-vector"])
def test_a_batch_that_cannot_fit_in_memory_is_refused_up_front(saved, name, capsys):
    pipe = genzoo.load_pipeline(saved(name))
    with pytest.raises(ValueError, match=r"batch_size=1000000000 samples of shape \S+ need about [\d.]+ GiB .*; this "
                                         r"machine has [\d.]+ GiB available") as info:
        pipe(batch_size=10**9, num_inference_steps=2, output_type="np")
    assert "\n" not in str(info.value)
    err = cli_refuses(capsys, ["sample", saved(name), "--num-samples", 1000000000, "--out", "x.npy"], "GiB")
    assert "batch_size=1000000000" in err


def test_memory_estimate_counts_the_model_width_guidance_and_big_sample_sizes(monkeypatch, tmp_path, capsys):
    pipe = genzoo.DDPMPipeline(unet=tiny_unet(size=4096), scheduler=genzoo.DDPMScheduler())
    pipe.save_pretrained(tmp_path / "big")
    monkeypatch.setattr(memory, "available_memory", lambda device: (8 * 2**30, "MemAvailable"))
    # 16 samples of 1x4096x4096: 3 copies of the samples and 2 of the 8-channel first feature map, in float32
    expected = 4 * 16 * 4096 * 4096 * (3 + 2 * 8) / 2**30
    with pytest.raises(ValueError, match=rf"batch_size=16 samples of shape 1x4096x4096 need about {expected:.1f} GiB"
                                         r".*8.0 GiB available \(MemAvailable\)"):
        pipe(batch_size=16, num_inference_steps=1)
    cli_refuses(capsys, ["sample", tmp_path / "big", "--out", tmp_path / "x.png"], r"shape 1x4096x4096 need about")

    # Classifier-free guidance doubles the model batch: 10**7 samples of 1x8x8 with 8-channel activations need
    # 4 * 10**7 * (3 * 64 + 2 * 512) bytes unguided, 4 * 10**7 * (3 * 64 + 2 * 2 * 512) guided.
    from genzoo.conditioning import set_id2label

    conditional = genzoo.DDPMPipeline(unet=tiny_unet(size=8, num_class_embeds=3), scheduler=genzoo.DDPMScheduler())
    set_id2label(conditional.unet, {0: "a", 1: "b"})
    unguided, guided = 4 * 10**7 * (3 * 64 + 2 * 512) / 2**30, 4 * 10**7 * (3 * 64 + 4 * 512) / 2**30
    monkeypatch.setattr(memory, "available_memory", lambda device: (int((unguided + guided) / 2 * 2**30), "test"))
    conditional._check_sampling_memory(10**7, (1, 8, 8))  # fits
    with pytest.raises(ValueError, match=rf"batch_size=10000000 samples of shape 1x8x8 need about {guided:.1f} GiB"):
        conditional(batch_size=10**7, guidance_scale=3.0, num_inference_steps=1)
    assert memory.sample_sizes(conditional.unet, (1, 8, 8)) == ((1, 8, 8), 64, 8 * 64)
    assert memory.sample_sizes(genzoo.MLPDenoiser(hidden_dim=16), (2,)) == ((2,), 2, 16)
    assert memory.sample_sizes(None, (3, 4)) == ((3, 4), 12, 12)


def test_available_memory_reads_the_machine():
    available, source = memory.available_memory("cpu")
    assert available is None or (available > 0 and source)


# ------------------------------------------------------------------------------------- 7. __call__ arguments
def _latent_shape(pipe) -> tuple[int, ...]:
    if isinstance(pipe, genzoo.GANPipeline):
        return (1, *pipe.generator.latent_shape)
    if isinstance(pipe, genzoo.VAEPipeline):
        return (1, *pipe.latent_shape)
    return (1, *pipe.unet.sample_shape)


@pytest.mark.parametrize("name", ["ddpm-vector", "gan-vector", "vae-vector"])
@pytest.mark.parametrize("kwargs,match", [
    ({"batch_size": 0}, r"batch_size must be a positive integer, got 0"),
    ({"batch_size": -3}, r"batch_size must be a positive integer, got -3"),
    ({"batch_size": 2.0}, r"batch_size must be a positive integer, got 2.0"),
    ({"batch_size": True}, r"batch_size must be a positive integer, got True"),
    ({"batch_size": "3"}, r"batch_size must be a positive integer, got '3'"),
    ({"num_inference_steps": 0}, r"num_inference_steps must be a positive integer, got 0"),
    ({"num_inference_steps": 2.5}, r"num_inference_steps must be a positive integer, got 2.5"),
    ({"guidance_scale": float("nan")}, r"guidance_scale must be a finite number >= 0.*got nan"),
    ({"guidance_scale": float("inf")}, r"guidance_scale must be a finite number >= 0.*got inf"),
    ({"guidance_scale": -1.0}, r"guidance_scale must be a finite number >= 0.*got -1.0"),
    ({"guidance_scale": "2"}, r"guidance_scale must be a finite number >= 0.*got '2'"),
    ({"output_type": "mp4"}, r"output_type='mp4' is not supported"),
    ({"generator": 0}, r"generator must be a torch.Generator .*got int"),
    ({"generator": [torch.Generator(), 1]}, r"generator must be a torch.Generator .*list holding Generator, int"),
    ({"latents": lambda shape: torch.full(shape, float("nan"))}, r"latents hold \d+ non-finite values"),
    ({"latents": lambda shape: torch.full(shape, float("-inf"))}, r"latents hold \d+ non-finite values"),
    ({"latents": lambda shape: torch.zeros(shape, dtype=torch.long)},
     r"latents must be a floating-point torch.Tensor, got a torch.int64 tensor"),
    ({"latents": lambda shape: torch.zeros(shape).tolist()},
     r"latents must be a floating-point torch.Tensor, got list"),
], ids=lambda value: None if not isinstance(value, dict) else "-".join(f"{k}" for k in value))
def test_bad_call_arguments_are_one_line_value_errors(saved, name, kwargs, match):
    pipe = genzoo.load_pipeline(saved(name))
    pipe.set_progress_bar_config(disable=True)
    call = {"num_inference_steps": 2, "output_type": "np", **kwargs}
    if callable(call.get("latents")):
        call["latents"] = call["latents"](_latent_shape(pipe))
    with pytest.raises(ValueError, match=match) as info:
        pipe(**call)
    assert "\n" not in str(info.value)


def test_class_labels_of_the_wrong_type_are_value_errors():
    pipe = tiny_pipeline("gan", "vector")
    pipe.generator = genzoo.MLPGenerator(hidden_dim=16, num_class_embeds=2)
    from genzoo.conditioning import set_id2label

    set_id2label(pipe.generator, {0: "a", 1: "b"})
    with pytest.raises(ValueError, match=r"class_labels must be ints or label names"):
        pipe(class_labels=[0.5], output_type="np")


@pytest.mark.parametrize("family", ["gan", "vae", "ddpm", "flow-matching"])
def test_non_finite_samples_are_an_error_not_an_output(family):
    pipe = tiny_pipeline(family, "vector")
    model = pipe.components[pipe.labelled_component]
    with torch.no_grad():
        last = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
        last.bias.fill_(float("nan"))
    ours = (rf"{type(pipe).__name__} produced \d+ non-finite values \(NaN or inf\) in 3 samples of shape \(2,\); the "
            "weights or the sampler settings are broken")
    # a scheduler may notice first, within the loop (its own one-line ValueError)
    with pytest.raises(ValueError, match=ours if family in ("gan", "vae") else rf"{ours}|NaN or inf") as info:
        samples_of(pipe, batch_size=3, steps=2)
    assert "\n" not in str(info.value)
    # the pipeline's own check, whatever the scheduler does
    with pytest.raises(ValueError, match=ours):
        pipe._output(torch.tensor([[0.0, float("nan")], [1.0, 2.0], [float("inf"), 0.0]]), "np", True)


# ------------------------------------------------------------------------------------- 8. atomic save
def _snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_save_that_fails_midway_leaves_the_previous_pipeline(tmp_path, monkeypatch):
    old = tiny_pipeline("ddpm", "vector", seed=0)
    old.save_pretrained(tmp_path / "out")
    (tmp_path / "out" / "notes.txt").write_text("mine")
    before = _snapshot(tmp_path / "out")
    expected = samples_of(genzoo.load_pipeline(tmp_path / "out"))

    new = tiny_pipeline("ddpm", "vector", seed=1)
    original = type(new.unet).save_pretrained

    def half_then_fail(self, save_directory, *args, **kwargs):
        original(self, save_directory, *args, **kwargs)
        path = Path(save_directory) / WEIGHTS
        path.write_bytes(path.read_bytes()[:100])  # a partial write, then the disk fills up
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(type(new.unet), "save_pretrained", half_then_fail)
    with pytest.raises(OSError, match="No space left"):
        new.save_pretrained(tmp_path / "out")
    assert _snapshot(tmp_path / "out") == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no staging folder left behind
    assert torch.equal(samples_of(genzoo.load_pipeline(tmp_path / "out")), expected)
    monkeypatch.undo()
    new.save_pretrained(tmp_path / "out")
    assert torch.equal(samples_of(genzoo.load_pipeline(tmp_path / "out")), samples_of(new))
    assert (tmp_path / "out" / "notes.txt").read_text() == "mine"


def test_a_vae_saved_over_a_ddpm_folder_leaves_no_stale_components(tmp_path):
    folder = tmp_path / "out"
    tiny_pipeline("ddpm", "vector").save_pretrained(folder)
    (folder / "notes.txt").write_text("keep me")
    (folder / "checkpoints" / "checkpoint-10").mkdir(parents=True)
    (folder / "checkpoints" / "checkpoint-10" / "state.bin").write_bytes(b"state")
    assert loading.pipeline_entries(folder) == {"model_index.json", "genzoo_hub.py", "unet", "scheduler"}
    vae = tiny_pipeline("vae", "vector")
    vae.save_pretrained(folder)
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["checkpoints", "genzoo_hub.py", "model_index.json", "notes.txt", "vae"]
    assert (folder / "notes.txt").read_text() == "keep me"
    assert (folder / "checkpoints" / "checkpoint-10" / "state.bin").read_bytes() == b"state"
    loaded = genzoo.load_pipeline(folder)
    assert type(loaded) is genzoo.VAEPipeline and torch.equal(samples_of(loaded), samples_of(vae))
    assert loading.pipeline_entries(folder) == {"model_index.json", "genzoo_hub.py", "vae"}


def test_pipeline_entries_of_folders_without_a_pipeline(tmp_path):
    assert loading.pipeline_entries(tmp_path / "absent") == set()
    assert loading.pipeline_entries(tmp_path) == set()
    (tmp_path / "model_index.json").write_text("[not an object")
    assert loading.pipeline_entries(tmp_path) == set()
    (tmp_path / "model_index.json").write_text(json.dumps(
        {"_class_name": "GANPipeline", "generator": ["genzoo_hub", "MLPGenerator"], "tokenizer": [None, None],
         "../x": ["a", "b"], "flag": True}))
    assert loading.pipeline_entries(tmp_path) == {"model_index.json", "genzoo_hub.py", "generator"}


def test_save_pretrained_refuses_a_file_and_follows_a_link(tmp_path):
    (tmp_path / "file").write_text("precious")
    pipe = tiny_pipeline("gan", "vector")
    with pytest.raises(FileExistsError, match="is a file"):
        pipe.save_pretrained(tmp_path / "file")
    assert (tmp_path / "file").read_text() == "precious"
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    pipe.save_pretrained(tmp_path / "link")
    assert (tmp_path / "link").is_symlink() and (tmp_path / "real" / "model_index.json").is_file()
    assert math.isfinite(float(samples_of(genzoo.load_pipeline(tmp_path / "link")).sum()))


def test_saving_over_the_working_directory_keeps_the_process_in_it(tmp_path, monkeypatch):
    """``genzoo train --output_dir .``: the swap replaces the folder the process works in; it follows the folder."""
    folder = tmp_path / "run"
    (folder / "logs").mkdir(parents=True)
    monkeypatch.chdir(folder / "logs")
    tiny_pipeline("gan", "vector").save_pretrained(folder)
    tiny_pipeline("gan", "vector", seed=1).save_pretrained("..")
    Path("after.txt").write_text("written after the save")
    assert (folder / "logs" / "after.txt").read_text() == "written after the save"
    assert Path.cwd() == (folder / "logs").resolve()
    monkeypatch.chdir(folder)
    tiny_pipeline("vae", "vector").save_pretrained(".")
    assert Path.cwd() == folder.resolve() and Path("logs/after.txt").is_file()
    assert type(genzoo.load_pipeline(".")) is genzoo.VAEPipeline and not Path("generator").exists()


# ------------------------------------------------------------------------------------- 9. links, FIFOs, devices
def within(seconds: float, call):
    """``call()`` in a thread that must end within ``seconds``: a read that blocks (a FIFO) fails the test instead
    of hanging it. Returns what ``call`` returns, or raises what it raises."""
    result = {}

    def run():
        try:
            result["value"] = call()
        except BaseException as exc:  # handed to the test's thread
            result["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still blocked after {seconds} s"
    if "error" in result:
        raise result["error"]
    return result.get("value")


def _outside(folder: Path) -> Path:
    outside = folder.parent / f"{folder.name}-outside"
    outside.mkdir()
    return outside


def test_a_component_folder_linked_outside_is_refused_and_one_linked_inside_loads(saved, capsys):
    folder = saved("ddpm-vector")
    expected = samples_of(genzoo.load_pipeline(folder))
    outside = _outside(folder)
    shutil.move(folder / "unet", outside / "unet")
    (folder / "unet").symlink_to(outside / "unet")
    message = refused(folder, r"Component 'unet': .*unet leads outside .*\(a symlink to .*-outside/unet\)")
    assert f"{folder / 'unet'} leads outside {folder} (a symlink to {os.path.realpath(outside / 'unet')})" in message
    cli_refuses(capsys, ["sample", folder, "--out", folder / "x.npy"], r"unet leads outside")
    (folder / "unet").unlink()
    shutil.move(outside / "unet", folder / "unet-real")
    (folder / "unet").symlink_to("unet-real")  # a link that stays inside the folder is fine
    assert torch.equal(samples_of(genzoo.load_pipeline(folder)), expected)


@pytest.mark.parametrize("name", ["model_index.json", "unet/config.json", f"unet/{WEIGHTS}",
                                  "scheduler/scheduler_config.json", "unet/notes.txt"])
def test_a_file_linked_outside_is_refused_and_one_linked_inside_loads(saved, name):
    """Configs, weights and any other file of a component folder (Diffusers' and transformers' from_pretrained may
    read any of them: shard indexes, shards, tokenizer files)."""
    folder = saved("ddpm-vector")
    expected = samples_of(genzoo.load_pipeline(folder))
    if not (folder / name).exists():
        (folder / name).write_text("notes")
    target = _outside(folder) / name.replace("/", "-")
    shutil.move(folder / name, target)
    (folder / name).symlink_to(target)
    message = refused(folder, r"leads outside")
    assert f"{folder / name} leads outside {folder} (a symlink to {os.path.realpath(target)})" in message
    (folder / name).unlink()
    inside = folder / "store" / target.name
    inside.parent.mkdir()
    shutil.move(target, inside)
    (folder / name).symlink_to(inside)  # an absolute link, into the folder
    assert torch.equal(samples_of(genzoo.load_pipeline(folder)), expected)


def test_a_hub_snapshot_loads_through_its_blob_links_but_not_through_a_link_out_of_its_repo(saved, tmp_path):
    """A snapshot's files are links to ../../blobs: the repo's cache folder is the root, by Hub id and by the
    snapshot's path (as `hf download` prints it); a link from the snapshot to anywhere else is refused."""
    folder = saved("ddpm-vector")
    expected = samples_of(genzoo.load_pipeline(folder))
    cache = tmp_path / "cache"
    snapshot = cache / "models--user--linked" / "snapshots" / put_in_hub_cache(folder, cache, "user/linked")
    assert (snapshot / "unet" / WEIGHTS).is_symlink()
    for source in ("user/linked", snapshot):
        assert torch.equal(samples_of(genzoo.load_pipeline(source, cache_dir=cache)), expected)
    secret = tmp_path / "secret.json"
    secret.write_text(json.dumps(json.loads((folder / "unet" / "config.json").read_text())))
    (snapshot / "unet" / "config.json").unlink()
    (snapshot / "unet" / "config.json").symlink_to(secret)
    for source in ("user/linked", snapshot):
        refused(source, r"Component 'unet': \S*unet/config.json leads outside \S*models--user--linked \(a symlink to "
                        r"\S*secret.json\)", cache_dir=cache)
    assert folder_root(snapshot) == snapshot.parents[1] and folder_root(folder) == folder


@pytest.mark.parametrize("name", ["model_index.json", "unet/config.json", f"unet/{WEIGHTS}",
                                  "scheduler/scheduler_config.json", "unet/vocab.json"])
def test_a_fifo_in_the_folder_is_refused_without_blocking(saved, name):
    folder = saved("ddpm-vector")
    (folder / name).unlink(missing_ok=True)
    os.mkfifo(folder / name)
    message = within(30, lambda: refused(folder, r"is not a regular file"))
    assert str(folder / name) in message


@pytest.mark.parametrize("name", ["model_index.json", "unet/config.json", f"unet/{WEIGHTS}"])
def test_a_link_to_a_device_is_refused_as_outside_unread(saved, name):
    folder = saved("ddpm-vector")
    (folder / name).unlink()
    (folder / name).symlink_to("/dev/zero")
    message = within(30, lambda: refused(folder, r"leads outside .*\(a symlink to /dev/zero\)"))
    assert f"{folder / name} leads outside" in message


def test_reads_are_bounded_by_bytes_read_not_by_st_size(tmp_path):
    """/dev/zero claims 0 bytes and never ends; a FIFO blocks the reader; a long file is refused after the limit."""
    os.mkfifo(tmp_path / "fifo")
    for path in (Path("/dev/zero"), tmp_path / "fifo"):
        with pytest.raises(PipelineLoadError, match=rf"^{re.escape(str(path))} is not a regular file .*refused unread"):
            within(30, lambda: read_json_object(path, limit=1024))
        with pytest.raises(PipelineLoadError, match=rf"^{re.escape(str(path))} is not a regular file .*refused unread"):
            within(30, lambda: untrusted.read_safetensors_header(path))
    big = tmp_path / "big.json"
    big.write_text(json.dumps({"a": "x" * 2000}))
    with pytest.raises(PipelineLoadError, match=rf"^{re.escape(str(big))} is larger than the 1024 bytes allowed"):
        read_json_object(big, limit=1024)
    assert read_json_object(big) == {"a": "x" * 2000}


def _add_tensors(path: Path, count: int, numel: int, offsets=None) -> None:
    """Append ``count`` F32 tensors of ``numel`` elements (zero-size for 0) to a safetensors file, each with bytes of
    its own (or all at ``offsets``)."""
    data = path.read_bytes()
    length = int.from_bytes(data[:8], "little")
    header, body = json.loads(data[8 : 8 + length]), data[8 + length :]
    end = len(body)
    for i in range(count):
        header[f"padding.{i}"] = {"dtype": "F32", "shape": [numel], "data_offsets": offsets or [end, end + 4 * numel]}
        end += 0 if offsets else 4 * numel
    raw = json.dumps(header).encode()
    path.write_bytes(len(raw).to_bytes(8, "little") + raw + body + bytes(end - len(body)))


@pytest.mark.slow
def test_zero_size_tensors_do_not_raise_the_build_budget(saved):
    """200,000 zero-size tensors (no bytes) in the header: the budget is that of the 26 real tensors."""
    folder = saved("ddpm-vector")
    _add_tensors(folder / "unet" / WEIGHTS, 200_000, 0)
    edit_json(folder / "unet" / "config.json", lambda config: config.update(num_layers=500_000))
    start = time.perf_counter()
    budget = untrusted.BUILD_BUDGET_PER_TENSOR * 26 + untrusted.BUILD_BUDGET_BASE
    refused(folder, rf"builds a MLPDenoiser of more than {budget} modules and tensors, while its weights hold 26 "
                    r"tensors with data")
    # About 1.5 s, most of it parsing the 13 MB header (the budget of all 200,026 tensors: minutes and gigabytes).
    assert time.perf_counter() - start < 10


@pytest.mark.slow
def test_the_build_budget_has_a_ceiling_whatever_the_header_lists(saved):
    """Tensors of one element each cost the header 4 bytes: the budget stops at BUILD_BUDGET however many."""
    folder = saved("ddpm-vector")
    _add_tensors(folder / "unet" / WEIGHTS, 5_000, 1)
    edit_json(folder / "unet" / "config.json", lambda config: config.update(num_layers=500_000))
    assert untrusted.BUILD_BUDGET_PER_TENSOR * 5026 + untrusted.BUILD_BUDGET_BASE > untrusted.BUILD_BUDGET
    start = time.perf_counter()
    refused(folder, rf"builds a MLPDenoiser of more than {untrusted.BUILD_BUDGET} modules and tensors, while its "
                    r"weights hold 5026 tensors with data")
    # About 1.5 s on an idle core: the build stopped at BUILD_BUDGET (without the ceiling, 80,672: a minute).
    assert time.perf_counter() - start < 10


def test_tensors_sharing_bytes_are_refused(saved):
    folder = saved("ddpm-vector")
    _add_tensors(folder / "unet" / WEIGHTS, 2, 1, offsets=[0, 4])
    refused(folder, r"is not a valid safetensors file: tensors 'padding.0' and 'padding.1' share bytes|"
                    r"is not a valid safetensors file: tensors \S+ and \S+ share bytes")


@pytest.mark.slow
def test_the_build_budget_fits_the_largest_real_models_four_times_over(monkeypatch):
    """SDXL's UNet (3609 registrations, the most of the models measured) and Flux's transformer (2430) build on the
    meta device within a quarter of BUILD_BUDGET."""
    import diffusers

    monkeypatch.setattr(untrusted, "BUILD_BUDGET", untrusted.BUILD_BUDGET // 4)
    sdxl = dict(sample_size=128, cross_attention_dim=2048, block_out_channels=[320, 640, 1280],
                down_block_types=["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
                up_block_types=["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
                transformer_layers_per_block=[1, 2, 10], attention_head_dim=[5, 10, 20], use_linear_projection=True,
                addition_embed_type="text_time", addition_time_embed_dim=256,
                projection_class_embeddings_input_dim=2816)
    for cls, config, tensors in [(diffusers.UNet2DConditionModel, sdxl, 1680),
                                 (diffusers.FluxTransformer2DModel, {}, 1156)]:
        expected = untrusted.expected_tensors(cls, "diffusers", "unet", config, num_tensors=10**6)
        assert len(expected) == tensors

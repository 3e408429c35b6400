"""Property-based tests (hypothesis): whatever a folder or a caller throws at a pipeline, the answer is a result or a
one-line PipelineLoadError / ValueError, never another exception and never NaN returned as samples.

(a) random mutations of a saved tiny pipeline's ``model_index.json`` and component configs -> ``load_pipeline``;
(b) random ``__call__`` arguments on tiny pipelines.
"""

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch
from helpers import tiny_pipeline, tiny_unet
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import genzoo
from genzoo.conditioning import set_id2label
from genzoo.model_index import PipelineLoadError

pytestmark = pytest.mark.slow

SETTINGS = settings(max_examples=100, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
FOLDER_PIPELINES = ("ddpm-vector", "gan-vector", "vae-vector", "flow-matching-image")


def one_line(exc: BaseException) -> bool:
    return "\n" not in str(exc) and len(str(exc)) < 2000


# ------------------------------------------------------------------------------------- (a) mutated folders
@pytest.fixture(scope="module")
def saved_folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("property-folders")
    for name in FOLDER_PIPELINES:
        family, _, data = name.rpartition("-")
        tiny_pipeline(family, data).save_pretrained(root / name)
    return root


JSON_VALUES = st.recursive(
    st.one_of(
        st.none(), st.booleans(),
        st.integers(-5, 40),
        st.sampled_from([0, -1, 2**20, 2**20 + 1, 10**7, 10**9, 10**12, -(10**12), 2**63, 10**30]),
        st.sampled_from([0.5, -0.0, 1e-30, 1e300, -1e300, float("nan"), float("inf"), float("-inf")]),
        st.sampled_from(["", "../outside", "a/b", "/abs", ".", "..", "diffusers", "genzoo_hub", "UNet2DModel",
                         "MLPDenoiser", "torch", "os", "silu", "DownBlock2D", "\x00", "é"]),
    ),
    lambda children: st.one_of(st.lists(children, max_size=3), st.dictionaries(st.text(max_size=4), children,
                                                                                 max_size=3)),
    max_leaves=6,
)
ENTRY_VALUES = st.one_of(
    JSON_VALUES,
    st.sampled_from([[None, None], ["diffusers", "UNet2DModel"], ["genzoo_hub", "MLPGenerator"], ["genzoo_hub", "Nope"],
                     ["transformers", "CLIPTextModel"], ["os", "system"], ["diffusers"], [1, 2], ["genzoo_hub", ""]]),
)
PATH_NAMES = st.sampled_from(["../outside", "a/b", "/abs", ".", "..", "", "x y", "unet/..", "_hidden", "ok_name"])


@st.composite
def mutations(draw):
    """A list of (file, operation, key, value) edits."""
    edits = []
    for _ in range(draw(st.integers(1, 3))):
        target = draw(st.sampled_from(["model_index", "model_config", "scheduler_config"]))
        op = draw(st.sampled_from(["drop", "set", "rename", "replace"]))
        value = draw(ENTRY_VALUES if target == "model_index" else JSON_VALUES)
        edits.append((target, op, draw(st.integers(0, 50)), value, draw(PATH_NAMES)))
    return edits


def _model_folder(folder: Path) -> Path:
    for name in ("unet", "generator", "vae"):
        if (folder / name).is_dir():
            return folder / name
    raise AssertionError(folder)


def apply(folder: Path, edits) -> None:
    for target, op, index, value, new_name in edits:
        if target == "model_index":
            path = folder / "model_index.json"
        elif target == "model_config":
            path = _model_folder(folder) / "config.json"
        else:
            path = folder / "scheduler" / "scheduler_config.json"
            if not path.parent.is_dir():
                path = _model_folder(folder) / "config.json"
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            data = None
        if op == "replace" or not isinstance(data, dict):
            data = value
        elif data:
            key = sorted(data)[index % len(data)]
            if op == "drop":
                del data[key]
            elif op == "set":
                data[key] = value
            else:
                data[new_name] = data.pop(key)
        path.write_text(json.dumps(data))


@pytest.mark.parametrize("name", FOLDER_PIPELINES)
@SETTINGS
@given(edits=mutations())
def test_mutated_folders_load_or_fail_with_one_line_errors(saved_folders, name, edits):
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(shutil.copytree(saved_folders / name, Path(tmp) / "pipe"))
        apply(folder, edits)
        try:
            pipe = genzoo.load_pipeline(folder)
        except (PipelineLoadError, ValueError) as exc:
            assert one_line(exc), str(exc)
            event(f"refused: {type(exc).__name__}")
        else:
            assert isinstance(pipe, genzoo.GenzooPipeline)
            event("loaded")
            pipe.set_progress_bar_config(disable=True)
            try:  # what loads samples finite values, or says why not
                result = pipe(batch_size=2, num_inference_steps=2, output_type="pt",
                              generator=torch.Generator().manual_seed(0))
            except ValueError as exc:
                assert one_line(exc), str(exc)
                event(f"sampling refused: {str(exc).split()[0]}")
            else:
                assert _finite(result)


def test_mutations_reach_the_checks(saved_folders):
    """The strategy is not vacuous: some mutations load, others are refused for different reasons."""
    folder = Path(tempfile.mkdtemp())
    try:
        examples = [
            [("model_config", "set", 0, 10**9, "x")],
            [("model_index", "rename", 2, None, "../outside")],
            [("model_index", "replace", 0, [1, 2], "x")],
        ]
        for edits in examples:
            shutil.rmtree(folder / "pipe", ignore_errors=True)
            shutil.copytree(saved_folders / "ddpm-vector", folder / "pipe")
            apply(folder / "pipe", edits)
            with pytest.raises(PipelineLoadError):
                genzoo.load_pipeline(folder / "pipe")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# ------------------------------------------------------------------------------------- (b) random __call__ arguments
@pytest.fixture(scope="module")
def pipelines():
    conditional = genzoo.FlowMatchingPipeline(unet=tiny_unet(num_class_embeds=3),
                                              scheduler=genzoo.FlowMatchEulerScheduler())
    set_id2label(conditional.unet, {0: "zero", 1: "one"})
    conditional.set_progress_bar_config(disable=True)
    pipes = {
        "ddpm-vector": tiny_pipeline("ddpm", "vector"),
        "gan-vector": tiny_pipeline("gan", "vector"),
        "vae-image": tiny_pipeline("vae", "image"),
        "flow-matching-class-image": conditional,
    }
    return pipes


def _latent_shape(pipe):
    if isinstance(pipe, genzoo.GANPipeline):
        return tuple(pipe.generator.latent_shape)
    if isinstance(pipe, genzoo.VAEPipeline):
        return tuple(pipe.latent_shape)
    from genzoo.models import denoiser_sample_shape

    return denoiser_sample_shape(pipe.unet)


def mostly(valid, bad):
    """``valid`` about nine times in ten, else ``bad``: every argument is sometimes wrong, all of them together often
    right, so sampling itself is reached."""
    return st.tuples(st.integers(0, 19), valid, bad).map(lambda t: t[2] if t[0] in (3, 11) else t[1])


BATCH_SIZES = mostly(st.integers(1, 4), st.one_of(st.integers(-3, 0), st.sampled_from(
    [10**9, 10**12, 2**62, 2.0, 0.5, float("nan"), True, "2", None])))
BAD_STEPS = st.one_of(st.integers(-2, 0), st.sampled_from([1.5, float("inf"), "2", False]))
BAD_GUIDANCE = st.sampled_from([float("nan"), float("inf"), -1e-9, -2.0, "3", True, [2.0]])
BAD_OUTPUT_TYPES = st.sampled_from(["latent", "", "PIL", None, 3])
BAD_LABELS = st.one_of(st.integers(-2, 4), st.sampled_from(["two", "", 1.5, True, {"a": 1}, []]),
                       st.lists(st.one_of(st.integers(-1, 3), st.sampled_from(["zero", "x"])), min_size=1, max_size=3))
LATENTS = mostly(st.sampled_from(["none", "good"]), st.sampled_from(["nan", "inf", "wrong-shape", "int", "list"]))
GENERATORS = mostly(st.sampled_from(["none", "one", "list"]), st.sampled_from(["short-list", "int"]))


def call_arguments(name: str):
    """Strategies of ``__call__`` arguments for the pipeline ``name``: mostly valid for it, sometimes not."""
    conditional = "class" in name
    images = "image" in name
    guidance = st.floats(0, 10) if conditional else st.sampled_from([None, 1, 1.0])
    labels = (st.one_of(st.none(), st.integers(0, 1), st.sampled_from(["zero", "one"]),
                        st.lists(st.sampled_from([0, 1, "zero", "one"]), min_size=1, max_size=4),
                        st.integers(0, 1).map(lambda i: torch.tensor([i, 1 - i])))
              if conditional else st.none())
    outputs = st.sampled_from(["pil", "np", "pt"] if images else ["np", "pt"])
    # None: the pipeline's default, 50 or 1000 steps for the denoisers -- kept for the one-call GAN and VAE
    steps = st.integers(1, 3) if "flow" in name or "ddpm" in name else st.one_of(st.none(), st.integers(1, 3))
    return dict(
        batch_size=BATCH_SIZES, steps=mostly(steps, BAD_STEPS), guidance=mostly(guidance, BAD_GUIDANCE),
        output_type=mostly(outputs, BAD_OUTPUT_TYPES), labels=mostly(labels, BAD_LABELS), latents=LATENTS,
        generator=GENERATORS,
    )


def _make_latents(kind, batch_size, shape):
    if kind == "none":
        return None
    size = batch_size if isinstance(batch_size, int) and not isinstance(batch_size, bool) and 0 < batch_size < 8 else 2
    value = torch.randn(size, *shape, generator=torch.Generator().manual_seed(0))
    if kind == "nan":
        value[0].view(-1)[0] = float("nan")
    elif kind == "inf":
        value[-1].view(-1)[-1] = float("inf")
    elif kind == "wrong-shape":
        value = torch.randn(size, *shape, 2)
    elif kind == "int":
        value = value.long()
    elif kind == "list":
        value = value.tolist()
    return value


def _make_generator(kind, batch_size):
    if kind == "none":
        return None
    if kind == "one":
        return torch.Generator().manual_seed(0)
    if kind == "int":
        return 0
    size = batch_size if isinstance(batch_size, int) and not isinstance(batch_size, bool) and 0 < batch_size < 8 else 2
    return [torch.Generator().manual_seed(i) for i in range(size - (kind == "short-list"))]


def _finite(result) -> bool:
    values = result.images if hasattr(result, "images") else result.samples
    if isinstance(values, list):
        assert all(isinstance(v, PIL.Image.Image) for v in values)
        return True
    array = values.numpy() if isinstance(values, torch.Tensor) else values
    return bool(np.isfinite(array).all())


@pytest.mark.parametrize("name", ["ddpm-vector", "gan-vector", "vae-image", "flow-matching-class-image"])
@SETTINGS
@given(data=st.data())
def test_random_call_arguments_work_or_are_one_line_value_errors(pipelines, name, data):
    pipe = pipelines[name]
    drawn = {key: data.draw(strategy, label=key) for key, strategy in call_arguments(name).items()}
    batch_size = drawn["batch_size"]
    kwargs = dict(batch_size=batch_size, num_inference_steps=drawn["steps"], guidance_scale=drawn["guidance"],
                  output_type=drawn["output_type"], class_labels=drawn["labels"],
                  latents=_make_latents(drawn["latents"], batch_size, _latent_shape(pipe)),
                  generator=_make_generator(drawn["generator"], batch_size))
    try:
        result = pipe(**kwargs)
    except ValueError as exc:
        assert one_line(exc), str(exc)
        event(f"refused: {str(exc).split()[0]}")
    else:
        event("sampled")
        assert _finite(result)

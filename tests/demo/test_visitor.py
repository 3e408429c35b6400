"""A demo that never traps its visitor (issue 26): values left in the page by one model never make another fail (the
page resets them, the server ignores them), defaults are the card's measurement settings and the page says which
settings drew a picture, example prompts come from the data set's own captions, pictures are readable, the card
panel always matches the chosen model, and a request's wait for a busy model counts in its time bound."""

import json
import os
import threading
import time

import numpy as np
import PIL.Image
import pytest

from helpers import ROOT, tiny_pipeline

import genzoo

gr = pytest.importorskip("gradio")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from genzoo.demo import (  # noqa: E402
    ALL_CLASSES,
    OWN_SOLVER,
    DemoBackend,
    Model,
    RequestTimeout,
    gradio_handlers,
    picture,
)
from genzoo.demo import model as demo_model  # noqa: E402
from genzoo.visualize import grid_shape, image_grid  # noqa: E402

ZOO = ROOT / "pipelines"
TEXT = "latent-flow-matching-shapes"
#: the order of describe's updates
CONTROLS = ["steps", "solver", "class_label", "guidance", "prompt", "negative_prompt", "examples", "figures"]


@pytest.fixture(scope="module")
def handlers():
    backend = DemoBackend([str(ZOO / n) for n in ("gan-digits", "vae-digits", "ddpm-digits", "flow-matching-shapes",
                                                  TEXT)])
    return gradio_handlers(backend)


def described(handlers, name) -> dict:
    return dict(zip(CONTROLS, handlers["describe"](name)))


def test_describe_resets_what_the_next_model_does_not_take(handlers):
    text = described(handlers, TEXT)
    assert text["prompt"]["visible"] and "value" not in text["prompt"]  # a prompt stays for another text model
    assert text["steps"] == {"__type__": "update", "value": 20, "visible": True}  # the card's 20, not the pipeline's 50
    assert text["guidance"]["value"] == "" and text["guidance"]["placeholder"] == "empty: the card's, 2"
    examples = genzoo.data.get_dataset("shapes").example_prompts(6)
    assert text["examples"]["samples"] == [[p] for p in examples] and text["examples"]["visible"]
    for name in ("gan-digits", "vae-digits", "ddpm-digits"):
        other = described(handlers, name)
        for box in ("prompt", "negative_prompt"):
            assert other[box] == {"__type__": "update", "visible": False, "value": ""}
        assert other["class_label"]["value"] == ALL_CLASSES and not other["class_label"]["visible"]
        assert other["guidance"]["value"] == "" and not other["guidance"]["visible"]
        assert other["solver"]["value"] == OWN_SOLVER
        assert other["examples"] == {"__type__": "update", "samples": [], "visible": False}
        assert other["figures"].startswith(f"**{name}**")
    assert described(handlers, "ddpm-digits")["steps"]["value"] == 100  # its card's, not DDPM's 1000
    assert described(handlers, "gan-digits")["steps"] == {"__type__": "update", "value": None, "visible": False}
    assert handlers["example"]([examples[2]]) == examples[2]  # a clicked example becomes the prompt


def test_the_server_ignores_what_a_model_does_not_take_and_says_so(handlers):
    """The reported sequence through the API: a text model's values sent to every model that takes no text."""
    leftovers = dict(steps=3, solver="Heun (genzoo)", class_label="circle", guidance_scale="2.5",
                     prompt="a red circle", negative_prompt="a blue square")
    def generate(name, seed, **values):
        request = dict(steps=None, solver=OWN_SOLVER, class_label=ALL_CLASSES, guidance_scale="", prompt="",
                       negative_prompt="")
        return handlers["generate"](name, 2, seed, False, *{**request, **values}.values())

    image, _, what = generate(TEXT, 0, **leftovers)
    assert what.startswith("FlowMatchingPipeline: 2 samples, 3 steps (Heun (genzoo)), guidance 2.5, seed 0")
    assert what.endswith("not the card's 20 steps, the model's own solver, guidance 2; ignored, as "
                         f"{TEXT} does not take them: class label")
    everything = "sampling steps, solver, prompt, negative prompt, class label, guidance scale"
    for name, ignored in [("gan-digits", everything), ("vae-digits", everything),
                          ("ddpm-digits", "prompt, negative prompt, class label, guidance scale")]:
        extra = {**leftovers, "solver": OWN_SOLVER} if name == "ddpm-digits" else leftovers
        image, seed, what = generate(name, 4, **extra)
        assert what.endswith(f"; ignored, as {name} does not take them: {ignored}")
        plain, _, _ = generate(name, 4, **({"steps": 3} if name == "ddpm-digits" else {}))
        np.testing.assert_array_equal(np.asarray(image), np.asarray(plain))  # exactly as if they had not been sent


def test_defaults_are_the_cards_measurement_settings_and_the_line_says_so(tmp_path):
    ddpm = Model(str(ZOO / "ddpm-digits"))
    assert ddpm.pipe.default_num_inference_steps == 1000 and ddpm.default_steps == 100  # eval.json's
    assert ddpm.card_settings == {"steps": 100, "guidance": None}
    _, what = ddpm.sample(num_samples=2, seed=0, steps=100)
    assert what.startswith("DDPMPipeline: 2 samples, 100 steps, seed 0,") and what.endswith(" — the card's settings")
    _, what = ddpm.sample(num_samples=2, seed=0, steps=5)
    assert what.endswith(" — not the card's 100 steps")
    shapes = Model(str(ZOO / "flow-matching-shapes"))
    assert (shapes.default_steps, shapes.default_guidance) == (20, 2.0)
    _, what = shapes.sample(num_samples=2, seed=0, steps=20, guidance_scale="1")
    assert ", 20 steps, guidance 1, seed 0," in what and what.endswith(" — not the card's guidance 2")
    assert Model(str(ZOO / "gan-digits")).card_settings == {"steps": None, "guidance": None}
    # no eval.json: the pipeline's own defaults, and nothing said about a card; an eval.json out of bounds is not used
    pipe = tiny_pipeline("ddpm", "image")
    pipe.save_pretrained(tmp_path / "tiny")
    tiny = Model(str(tmp_path / "tiny"))
    assert tiny.card_settings is None and tiny.default_steps == pipe.default_num_inference_steps
    _, what = tiny.sample(num_samples=1, seed=0, steps=2)
    assert what.startswith("DDPMPipeline: 1 sample, 2 steps, seed 0,") and "card" not in what
    (tmp_path / "tiny" / "eval.json").write_text(json.dumps({"num_inference_steps": 10**6, "guidance_scale": 2}))
    assert Model(str(tmp_path / "tiny")).default_steps == pipe.default_num_inference_steps
    (tmp_path / "tiny" / "eval.json").write_text(json.dumps({"num_inference_steps": 7}))
    assert Model(str(tmp_path / "tiny")).default_steps == 7


def test_example_prompts_are_the_data_sets_captions_and_unknown_words_are_named():
    text = Model(str(ZOO / TEXT))
    examples = text.example_prompts()
    assert len(examples) == 6 and len(set(examples)) == 6
    assert examples == genzoo.data.get_dataset("shapes").example_prompts(6)
    assert all(text.unknown_words(p) == [] for p in examples)  # every word one the model was trained on
    assert Model(str(ZOO / "flow-matching-shapes")).example_prompts() == []  # classes, not text
    _, what = text.sample(num_samples=1, seed=0, steps=2, prompt="a cat and a red Dog", negative_prompt="a cat")
    assert what.endswith("; words this model does not know (not in its training captions): cat, Dog")
    _, what = text.sample(num_samples=1, seed=0, steps=2, prompt=examples[0])
    assert "does not know" not in what


def test_pictures_are_readable():
    digits = np.random.default_rng(0).random((16, 8, 8, 1)).astype(np.float32)
    grid = picture(digits)
    assert min(grid.size) >= 512
    small = image_grid(digits, *grid_shape(16))
    factor = grid.size[0] // small.shape[1]
    assert factor > 1 and grid.size == (small.shape[1] * factor, small.shape[0] * factor)
    np.testing.assert_array_equal(np.asarray(grid)[::factor, ::factor], small)  # nearest-neighbour, pixel for pixel
    shapes = picture(np.random.default_rng(0).random((16, 32, 32, 3)).astype(np.float32))
    assert min(shapes.size) >= 512
    # a 2-D plot with the longest description there is: its title is drawn, and nothing of it reaches the edges
    points = np.random.default_rng(0).normal(size=(64, 2)).astype(np.float32)
    what = ("FlowMatchingPipeline: 64 samples, 1000 steps (DPM-Solver++ (Diffusers)), seed 4294967295, 12.34 s"
            " — not the card's 50 steps, the model's own solver")
    plot = np.asarray(picture(points, what, "moons").convert("L"))
    spine = next(row for row in range(len(plot)) if (plot[row] < 128).mean() > 0.5)  # the axes' top edge
    top = plot[:spine]
    assert (top < 128).any()  # the title
    assert (top[:, :3] > 250).all() and (top[:, -3:] > 250).all()  # not cut at either side


def test_the_card_panel_never_shows_another_models_card(handlers):
    assert described(handlers, "flow-matching-shapes")["figures"].startswith("**flow-matching-shapes**")
    failed = described(handlers, "user/[no](such)*model*")
    assert failed["figures"].startswith("**This model cannot be shown:** model ") and "flow-matching" not in \
        failed["figures"].split("choose one of")[0]
    assert "\\[no\\]\\(such\\)" in failed["figures"]  # shown as typed, not as a link
    for box in CONTROLS[:-1]:
        assert failed[box]["visible"] is False
    assert failed["prompt"]["value"] == "" and failed["steps"]["value"] is None


def test_a_requests_wait_for_a_busy_model_counts_in_its_time_bound():
    ddpm, gan = Model(str(ZOO / "ddpm-digits")), Model(str(ZOO / "gan-digits"))
    ddpm.pipe, gan.pipe
    with ddpm.lock:  # another request is sampling this model
        start = time.monotonic()
        with pytest.raises(RequestTimeout, match=r"ddpm-digits stayed busy with other requests for 0.3 s, this "
                                                 r"demo's bound per request; try again in a moment\."):
            ddpm.sample(num_samples=1, seed=0, steps=2, max_seconds=0.3)
        assert time.monotonic() - start < 5
    # every many-step slot taken: a many-step request waits (within its bound), a one-step one does not wait at all
    slots = demo_model._MANY_STEP_SAMPLINGS
    taken = 0
    try:
        while slots.acquire(blocking=False):
            taken += 1
        assert taken == genzoo.demo.CONCURRENCY_LIMIT
        with pytest.raises(RequestTimeout, match="the demo stayed busy"):
            ddpm.sample(num_samples=1, seed=0, steps=2, max_seconds=0.3)
        samples, _ = gan.sample(num_samples=4, seed=0, max_seconds=0.3)
        assert samples.shape == (4, 8, 8, 1)
    finally:
        for _ in range(taken):
            slots.release()
    done = threading.Event()  # and the slots are free again
    threading.Thread(target=lambda: (ddpm.sample(num_samples=1, seed=0, steps=2, max_seconds=30), done.set())).start()
    assert done.wait(30)


def test_the_page_has_readable_pictures_and_examples():
    """The page's components: the gallery's tiles shown whole, examples empty at first."""
    from genzoo.demo import build_demo

    demo = build_demo([str(ZOO / "gan-digits"), str(ZOO / TEXT)])
    by_id = {block.elem_id: block for block in demo.blocks.values() if getattr(block, "elem_id", None)}
    assert by_id["gallery"].object_fit == "contain" and by_id["gallery"].preview is False
    assert by_id["examples"].samples in ([], None)
    assert isinstance(picture(np.zeros((1, 8, 8, 1), np.float32)), PIL.Image.Image)


def test_progress_bars_made_before_the_page_still_close(handlers):
    """The page's progress tracking (gr.Progress(track_tqdm=True)) patches tqdm to read ``self._progress``, which a
    bar made before the patch (a Hub download's, a pipeline's) lacks; such a bar must still close and be collected
    without an error."""
    import gc
    import sys

    import tqdm

    bar = tqdm.tqdm(total=2, disable=True)
    vars(bar).pop("_progress", None)  # as a bar made before the page patched tqdm
    errors = []
    hook, sys.unraisablehook = sys.unraisablehook, lambda raised: errors.append(raised.exc_value)
    try:
        bar.close()
        del bar
        gc.collect()
    finally:
        sys.unraisablehook = hook
    assert errors == []

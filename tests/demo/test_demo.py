"""The web demo (genzoo.demo) and the Space it writes: the sampling behind the page, its HTTP API through
gradio_client, the page itself in headless Chromium driven by Selenium, and `genzoo space` / `push --repo-type space`
against the test Hub."""

import os
import runpy
import shutil
import time
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch
import yaml

from helpers import ROOT

import genzoo
from genzoo import registry
from genzoo.cli import main

pytest.importorskip("gradio")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from genzoo.demo import ALL_CLASSES, OWN_SOLVER, Model, build_demo, picture, write_space  # noqa: E402

ZOO = ROOT / "pipelines"
#: one of each kind of page: one pass (GAN), steps and solvers (flow matching, DDPM), 2-D points, class labels, text
SOURCES = [str(ZOO / n) for n in ("gan-digits", "flow-matching-digits", "ddpm-digits", "vae-digits",
                                  "flow-matching-moons", "flow-matching-shapes", "latent-flow-matching-shapes")]
SCREENSHOT = os.environ.get("GENZOO_DEMO_SCREENSHOT")  # where to keep the browser test's screenshot (the docs' one)


def model(name: str) -> Model:
    return Model(str(ZOO / name))


def test_the_page_offers_what_each_family_has():
    gan, fm, ddpm, shapes, text = (model(n).controls() for n in ("gan-digits", "flow-matching-digits", "ddpm-digits",
                                                                  "flow-matching-shapes",
                                                                  "latent-flow-matching-shapes"))
    assert gan["steps"] is None and gan["solvers"] == [OWN_SOLVER] and gan["labels"] == []
    assert fm["steps"] == genzoo.FlowMatchingPipeline.default_num_inference_steps
    assert fm["solvers"] == [OWN_SOLVER, "Euler (genzoo)", "Heun (genzoo)", "DPM-Solver++ (Diffusers)",
                             "UniPC (Diffusers)"]
    assert "DDIM (Diffusers)" in ddpm["solvers"]
    assert shapes["conditioning"] == "class" and shapes["labels"] == ["circle", "square", "triangle", "cross"]
    assert text["conditioning"] == "text" and text["labels"] == []
    assert shapes["guidance"] == text["guidance"] == genzoo.FlowMatchingPipeline.default_guidance_scale
    assert gan["guidance"] is None and fm["guidance"] is None


def test_samples_are_seeded_and_a_solver_is_swapped_in_for_one_call_only():
    fm = model("flow-matching-digits")
    first, what = fm.sample(num_samples=4, seed=3, steps=4)
    again, _ = fm.sample(num_samples=4, seed=3, steps=4)
    other, _ = fm.sample(num_samples=4, seed=4, steps=4)
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)
    assert what.startswith("FlowMatchingPipeline: 4 samples, 4 steps, seed 3")
    # the page's Heun is exactly the pipeline with genzoo's Heun scheduler, and the saved scheduler comes back
    heun, what = fm.sample(num_samples=4, seed=3, steps=4, solver="Heun (genzoo)")
    pipe = genzoo.load_pipeline(ZOO / "flow-matching-digits")
    pipe.set_progress_bar_config(disable=True)
    pipe.scheduler = genzoo.FlowMatchHeunScheduler.from_config(pipe.scheduler.config)
    expected = pipe(batch_size=4, num_inference_steps=4, generator=torch.Generator().manual_seed(3), output_type="np")
    np.testing.assert_array_equal(heun, expected.images)
    assert "(Heun (genzoo))" in what and type(fm.pipe.scheduler) is genzoo.FlowMatchEulerScheduler
    # DDIM from Diffusers on the DDPM model
    ddim, _ = model("ddpm-digits").sample(num_samples=2, seed=0, steps=5, solver="DDIM (Diffusers)")
    assert ddim.shape == (2, 8, 8, 1) and np.isfinite(ddim).all()


def test_labels_prompts_and_pictures():
    shapes = model("flow-matching-shapes")
    circles, _ = shapes.sample(num_samples=2, seed=0, steps=2, class_label="circle", guidance_scale=1.5)
    by_id, _ = shapes.sample(num_samples=2, seed=0, steps=2, class_label="0", guidance_scale=" 1.5 ")  # the page's box
    np.testing.assert_array_equal(circles, by_id)
    cycled, _ = shapes.sample(num_samples=2, seed=0, steps=2, class_label=ALL_CLASSES)
    assert cycled.shape == (2, 32, 32, 3)
    text = model("latent-flow-matching-shapes")
    red, _ = text.sample(num_samples=2, seed=0, steps=2, prompt="a large red circle at the top left",
                         negative_prompt="a blue square")
    assert red.shape == (2, 32, 32, 3)
    grid = np.asarray(picture(red))
    assert grid.ndim == 3 and grid.std() > 1  # a grid of two images, not blank
    moons = model("flow-matching-moons")
    points, what = moons.sample(num_samples=64, seed=0, steps=4)
    plot = np.asarray(picture(points, what, moons.dataset))
    assert moons.dataset == "moons" and plot.shape[2] == 3 and plot.std() > 1


def test_a_plugin_scheduler_is_a_solver_of_the_models_of_its_kind(example_plugins):
    """The solver menu is the registry's (genzoo.pipelines.drivers.solver_choices): an installed plugin's flow
    scheduler is offered for flow models, and choosing it samples exactly as the pipeline with that scheduler."""
    label = "ShiftedFlowScheduler (genzoo-example-plugin)"
    fm, ddpm = model("flow-matching-digits"), model("ddpm-digits")
    assert fm.controls()["solvers"] == [OWN_SOLVER, "Euler (genzoo)", "Heun (genzoo)", label,
                                        "DPM-Solver++ (Diffusers)", "UniPC (Diffusers)"]
    assert label not in ddpm.controls()["solvers"]
    shifted, what = fm.sample(num_samples=2, seed=1, steps=3, solver=label)
    pipe = genzoo.load_pipeline(ZOO / "flow-matching-digits")
    pipe.set_progress_bar_config(disable=True)
    pipe.scheduler = registry.get("scheduler", "ShiftedFlowScheduler").from_config(pipe.scheduler.config)
    expected = pipe(batch_size=2, num_inference_steps=3, generator=torch.Generator().manual_seed(1), output_type="np")
    np.testing.assert_array_equal(shifted, expected.images)
    assert f"({label})" in what and type(fm.pipe.scheduler) is genzoo.FlowMatchEulerScheduler  # put back
    with pytest.raises(ValueError, match="not one for DDPMPipeline"):
        ddpm.sample(num_samples=2, seed=0, steps=2, solver=label)


def test_a_plugin_data_set_is_drawn_behind_its_models_samples(tmp_path):
    """The density under 2-D samples is the registered data set's ``demo_background``, a plugin's as a built-in's;
    images and data sets no package registers have none."""
    from helpers import installed, write_distribution

    from genzoo.demo.backend import data_background

    ring = ("import numpy as np\nfrom genzoo.data import PointDataSet\n\n"
            "def ring(n, rng):\n    angle = rng.uniform(0, 2 * np.pi, n)\n"
            "    return np.stack([np.cos(angle), np.sin(angle)], 1).astype(np.float32)\n\n"
            "RING = PointDataSet('ring', ring, 'points on the unit circle')\n")
    write_distribution(tmp_path, "genzoo-ring", "0.1.0", "[genzoo.datasets]\nring = genzoo_ring:RING\n",
                       {"genzoo_ring.py": ring})
    with installed(tmp_path, "genzoo_ring"):
        background = data_background("ring", 500)
        np.testing.assert_array_equal(background, registry.get("dataset", "ring").demo_background(500))
        assert background.shape == (500, 2) and np.allclose(np.linalg.norm(background, axis=1), 1, atol=1e-5)
        points = np.random.default_rng(0).normal(size=(64, 2)).astype(np.float32)
        assert not np.array_equal(np.asarray(picture(points, "", "ring")), np.asarray(picture(points, "", None)))
    assert data_background("ring") is None and data_background("digits") is None and data_background(None) is None
    assert data_background("moons", 100).shape == (100, 2)


def test_mistakes_are_the_pipelines_own_messages():
    fm, shapes = model("flow-matching-digits"), model("flow-matching-shapes")
    with pytest.raises(ValueError, match="num_inference_steps"):
        fm.sample(num_samples=2, seed=0, steps=0)
    with pytest.raises(ValueError, match="hexagon"):
        shapes.sample(num_samples=2, seed=0, steps=2, class_label="hexagon")
    _, what = fm.sample(num_samples=2, seed=0, steps=2, prompt="a seven")  # not a mistake: ignored, and said
    assert what.endswith("; ignored, as flow-matching-digits does not take them: prompt")
    with pytest.raises(ValueError, match=r"guidance scale must be a number in \[0, 30\] .*, got 'strong'"):
        fm.sample(num_samples=2, seed=0, steps=2, guidance_scale="strong")
    with pytest.raises(ValueError, match="not one for"):
        fm.sample(num_samples=2, seed=0, steps=2, solver="DDIM (Diffusers)")
    with pytest.raises(OSError):
        Model("user/no-such-model").pipe


def test_no_models_is_a_clear_error(monkeypatch, tmp_path):
    import genzoo.demo.backend

    monkeypatch.setattr(genzoo.demo.backend, "zoo_folders", lambda: (tmp_path,))
    with pytest.raises(ValueError, match="no models to show: pass folders or Hub ids"):
        build_demo()


# ---------------------------------------------------------------------------------------------------- the served app
@pytest.fixture(scope="module")
def served(demo_server):
    """`genzoo demo` in its own process on a free local port, as a user starts it; yields its URL."""
    with demo_server(SOURCES) as url:
        yield url


@pytest.mark.slow
@pytest.mark.subprocess
def test_the_api_through_gradio_client(served, request):
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    client = Client(served, verbose=False)
    request.addfinalizer(client.close)  # its heartbeat thread would otherwise keep polling the server
    args = dict(name="flow-matching-digits", num_samples=4, seed=5, randomize=False, steps=3, solver=OWN_SOLVER,
                class_label=ALL_CLASSES, guidance_scale="", prompt="", negative_prompt="")
    first, seed, what = client.predict(*args.values(), api_name="/generate")
    second, _, _ = client.predict(*args.values(), api_name="/generate")
    assert seed == 5 and "4 samples, 3 steps, seed 5" in what
    images = [np.asarray(PIL.Image.open(p)) for p in (first, second)]
    np.testing.assert_array_equal(*images)
    fm = model("flow-matching-digits")
    expected, _ = fm.sample(num_samples=4, seed=5, steps=3)
    np.testing.assert_array_equal(images[0], np.asarray(picture(expected)))  # the page shows exactly the samples
    _, drawn, _ = client.predict(*{**args, "randomize": True}.values(), api_name="/generate")
    assert 0 <= drawn < 2**32
    with pytest.raises(AppError, match="num_inference_steps"):
        client.predict(*{**args, "steps": 0}.values(), api_name="/generate")
    with pytest.raises(AppError, match="model 'user/no-such-model' is not served by this demo; choose one of: gan-"):
        client.predict(*{**args, "name": "user/no-such-model"}.values(), api_name="/generate")  # only its models
    # two requests at once are queued, and both get their own result
    jobs = [client.submit(*{**args, "seed": seed}.values(), api_name="/generate") for seed in (11, 12)]
    assert [job.result(timeout=120)[1] for job in jobs] == [11, 12]
    # the app keeps serving after the errors; the compare view samples every digits model with one seed
    gallery = client.predict("digits", 4, 0, api_name="/compare")
    names = [item["caption"].split(" -- ")[0] for item in gallery]
    assert names == ["gan-digits", "flow-matching-digits", "ddpm-digits", "vae-digits"]


@pytest.mark.slow
@pytest.mark.subprocess
@pytest.mark.browser
def test_the_page_in_a_real_browser(served, open_page, tmp_path):
    page = open_page(served)
    # the page opens on the first model, a GAN: no steps box, and Generate works as it is
    assert page.value_of("model") == "gan-digits"
    assert not page.shown("steps")
    gan = page.generate()
    assert gan.std() > 1 and min(gan.shape[:2]) >= 512  # 16 digits of 8x8 pixels, at a readable size
    assert page.text("info").startswith("GANPipeline: 16 samples, seed 0")
    page.choose_model("flow-matching-shapes")
    page.wait.until(lambda _: page.shown("class_label"))  # and its labels
    assert page.value_of("steps") == "20"  # the card's steps
    page.choose("class_label", "triangle")
    page.type_into("seed", 7)
    page.type_into("steps", 10)
    first = page.generate()
    assert first.std() > 1 and first.shape[0] > 64  # a grid of colour images, not a blank tile
    assert "seed 7" in page.text("info") and page.text("info").endswith("not the card's 20 steps")
    # exactly the pipeline's samples for what the page was given (the label, and the card's guidance)
    expected, _ = model("flow-matching-shapes").sample(num_samples=16, seed=7, steps=10, class_label="triangle")
    np.testing.assert_array_equal(first, np.asarray(picture(expected).convert("RGB")))
    assert "shapes-FD" in page.text("figures")  # the card's figures
    page.type_into("seed", 8)
    other = page.generate()
    assert other.shape == first.shape and not np.array_equal(other, first)
    page.type_into("seed", 7)
    np.testing.assert_array_equal(page.generate(), first)  # same seed, same picture
    page.browser.save_screenshot(str(tmp_path / "demo.png"))
    assert PIL.Image.open(tmp_path / "demo.png").size[0] >= 1000

    page.type_into("steps", 5000)  # a mistake: the bound in the page, and the page still works
    page.find("#generate")[0].click()
    page.wait.until(lambda _: "num_inference_steps must be a positive integer at most 1000 (the demo's bound), got "
                    "5000." in page.find("body")[0].text)
    page.type_into("steps", 10)
    page.type_into("seed", 8)
    np.testing.assert_array_equal(page.generate(), other)


@pytest.mark.slow
@pytest.mark.subprocess
@pytest.mark.browser
def test_no_value_of_one_model_traps_the_next(served, open_page, tmp_path):
    """Issue 26's report, in the browser: a text model with a prompt, then every model that takes no text; example
    prompts to click; the card's settings under the picture; a name that is not served empties the card panel."""
    page = open_page(served)
    page.choose_model("latent-flow-matching-shapes")
    page.wait.until(lambda _: page.shown("examples"))
    examples = genzoo.data.get_dataset("shapes").example_prompts(6)
    shown = [e.text for e in page.find("#examples button")]
    assert len(shown) == 6 and shown[:4] == examples[:4]  # (a long one is shown cut short)
    page.find("#examples button")[1].click()  # an example becomes the prompt
    page.wait.until(lambda _: page.value_of("prompt") == examples[1])
    page.type_into("prompt", "a red circle and a cat")
    text = page.generate()
    info = page.text("info")
    assert "20 steps, guidance 2, seed 0" in info and "the card's settings" in info
    assert info.endswith("words this model does not know (not in its training captions): cat")
    expected, _ = model("latent-flow-matching-shapes").sample(num_samples=16, seed=0, prompt="a red circle and a cat")
    np.testing.assert_array_equal(text, np.asarray(picture(expected).convert("RGB")))
    for name, kind in [("gan-digits", "GANPipeline"), ("vae-digits", "VAEPipeline"), ("ddpm-digits", "DDPMPipeline")]:
        page.choose_model(name)
        assert not page.shown("prompt") and not page.shown("examples")
        assert page.generate().std() > 1
        info = page.text("info")
        assert info.startswith(f"{kind}: 16 samples") and "ignored" not in info, info  # nothing left over
        assert info.endswith("the card's settings")
    assert "100 steps" in info  # ddpm-digits at its card's 100 steps, not DDPM's 1000
    page.choose_model("latent-flow-matching-shapes")  # the prompt box is empty again: nothing was kept hidden
    assert page.value_of("prompt") == ""
    page.choose("model", "no-such-model")
    page.wait.until(lambda _: page.text("figures").startswith("This model cannot be shown"))
    assert "shapes-FD" not in page.text("figures") and not page.shown("steps")
    page.browser.save_screenshot(str(tmp_path / "after.png"))
    if SCREENSHOT:  # the docs' screenshot: the text model with a prompt and the card's settings
        page.choose_model("latent-flow-matching-shapes")
        page.find("#examples button")[4].click()
        page.wait.until(lambda _: page.value_of("prompt") == examples[4])
        page.generate()
        page.browser.set_window_size(1400, 1500)  # the whole Generate tab, from the top
        page.browser.execute_script("window.scrollTo(0, 0)")
        time.sleep(0.5)
        page.browser.save_screenshot(SCREENSHOT)


# -------------------------------------------------------------------------------------------------------- the Space
def test_a_space_for_a_hub_model_loads_it_by_id_and_is_pushed(hub, tmp_path, capsys):
    pipe = genzoo.load_pipeline(ZOO / "gan-digits")
    pipe.push_to_hub("user/gan-digits", token=hub.token)
    out = tmp_path / "space"
    requirement = "genzoo[demo] @ git+https://example/genzoo"
    assert main(["space", "user/gan-digits", str(out), "--requirement", requirement]) == 0
    assert "genzoo push" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "app.py", "requirements.txt"]
    front = yaml.safe_load((out / "README.md").read_text().split("---")[1])
    assert front["sdk"] == "gradio" and front["app_file"] == "app.py" and front["models"] == ["user/gan-digits"]
    assert (out / "requirements.txt").read_text() == "genzoo[demo] @ git+https://example/genzoo\n"
    space = runpy.run_path(str(out / "app.py"), run_name="space")  # what the Space runs, but without serving
    assert space["MODELS"] == ["user/gan-digits"]
    shutil.rmtree(hub.cache_dir, ignore_errors=True)
    loaded = Model(space["MODELS"][0])
    samples, _ = loaded.sample(num_samples=2, seed=0)  # downloaded by id, as the Space does at start-up
    np.testing.assert_array_equal(samples, model("gan-digits").sample(num_samples=2, seed=0)[0])
    space["demo"].close()

    assert main(["push", str(out), "user/gan-digits-demo", "--repo-type", "space", "--token", hub.token]) == 0
    from huggingface_hub import HfApi

    files = HfApi(token=hub.token).list_repo_files("user/gan-digits-demo", repo_type="space")
    assert {"README.md", "app.py", "requirements.txt"} <= set(files)  # and the .gitattributes a new repo gets


def test_a_space_for_a_folder_carries_it_and_nothing_is_overwritten(tmp_path, capsys):
    out = write_space(str(ZOO / "vae-digits"), tmp_path / "space",
                      requirement="genzoo[demo] @ git+https://example/genzoo")
    from genzoo.hub import files_to_upload

    carried = sorted(p.relative_to(out / "model") for p in (out / "model").rglob("*") if p.is_file())
    assert carried == sorted(p.relative_to(ZOO / "vae-digits") for p in files_to_upload(ZOO / "vae-digits"))
    space = runpy.run_path(str(out / "app.py"), run_name="space")
    assert Path(space["MODELS"][0]) == out / "model"
    first, _ = Model(space["MODELS"][0]).sample(num_samples=2, seed=1)
    np.testing.assert_array_equal(first, model("vae-digits").sample(num_samples=2, seed=1)[0])
    space["demo"].close()
    before = (out / "app.py").read_text()
    assert main(["space", str(ZOO / "gan-digits"), str(out)]) == 2
    assert "not an empty folder" in capsys.readouterr().err and (out / "app.py").read_text() == before
    assert main(["space", str(tmp_path), str(tmp_path / "other")]) == 2
    assert "model_index.json" in capsys.readouterr().err


def test_demo_command_line_errors(capsys):
    assert main(["demo", "--port", "0"]) == 2
    assert "--port" in capsys.readouterr().err

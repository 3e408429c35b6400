"""The web demo (genzoo.demo) and the Space it writes: the sampling behind the page, its HTTP API through
gradio_client, the page itself in headless Chromium driven by Selenium, and `genzoo space` / `push --repo-type space`
against the test Hub."""

import io
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

from helpers import ROOT, free_port

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
    with pytest.raises((ValueError, TypeError), match="prompt"):
        fm.sample(num_samples=2, seed=0, steps=2, prompt="a seven")
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
def served():
    """`genzoo demo` in its own process on a free local port, as a user starts it; yields its URL."""
    import subprocess
    import sys
    from urllib.request import urlopen

    port = free_port()
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"}
    server = subprocess.Popen([sys.executable, "-m", "genzoo.cli", "demo", *SOURCES, "--port", str(port)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                page = urlopen(url, timeout=5).read().decode()
                break
            except OSError:
                assert server.poll() is None, f"genzoo demo exited: {server.stdout.read()}"
                assert time.monotonic() < deadline, "genzoo demo did not serve within 120 s"
                time.sleep(0.5)
        assert "gradio" in page.lower()
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


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


def chromium():
    """Headless Chromium through Selenium (Debian's chromium and chromium-driver)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (binary and driver):
        if os.environ.get("GENZOO_REQUIRE_BROWSER"):
            pytest.fail("chromium and chromedriver are required here (apt-get install chromium chromium-driver)")
        pytest.skip("no chromium/chromedriver (apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(driver), options=options)


@pytest.mark.slow
@pytest.mark.subprocess
@pytest.mark.browser
def test_the_page_in_a_real_browser(served, tmp_path):
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    browser = chromium()
    wait = WebDriverWait(browser, 60)
    try:
        browser.get(served)
        wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, "#generate")))

        def value_of(elem_id):
            return browser.find_element(By.CSS_SELECTOR, f"#{elem_id} input").get_attribute("value")

        def choose(elem_id, text):
            for _ in range(5):  # the page may re-render the drop-down while we type: then type again
                try:
                    box = browser.find_element(By.CSS_SELECTOR, f"#{elem_id} input")
                    box.click()
                    box.send_keys(Keys.CONTROL, "a")
                    box.send_keys(text, Keys.ENTER)
                    wait.until(lambda _: value_of(elem_id) == text)
                    return
                except StaleElementReferenceException:
                    continue
            raise AssertionError(f"could not choose {text!r} in #{elem_id}")

        def type_number(elem_id, value):
            box = browser.find_element(By.CSS_SELECTOR, f"#{elem_id} input[type=number]")
            box.send_keys(Keys.CONTROL, "a")
            box.send_keys(str(value))

        def generate() -> np.ndarray:
            """Press Generate and read the new picture (a new picture has a new URL: the page's files are named by
            their content, so two presses in a row must ask for different pictures)."""
            old = [e.get_attribute("src") for e in browser.find_elements(By.CSS_SELECTOR, "#output img")]
            browser.find_element(By.CSS_SELECTOR, "#generate").click()
            wait.until(lambda _: [e.get_attribute("src") for e in browser.find_elements(By.CSS_SELECTOR, "#output img")]
                       not in ([], old))
            src = browser.find_element(By.CSS_SELECTOR, "#output img").get_attribute("src")
            from urllib.request import urlopen

            return np.asarray(PIL.Image.open(io.BytesIO(urlopen(src).read())).convert("RGB"))

        # the page opens on the first model, a GAN: no steps box, and Generate works as it is
        assert value_of("model") == "gan-digits"
        assert not browser.find_elements(By.CSS_SELECTOR, "#steps input") or not browser.find_element(
            By.CSS_SELECTOR, "#steps").is_displayed()
        assert generate().std() > 1
        assert browser.find_element(By.CSS_SELECTOR, "#info").text.startswith("GANPipeline: 16 samples, seed 0")
        choose("model", "flow-matching-shapes")
        # the page has caught up with the choice when it shows the model's card figures and its labels
        wait.until(lambda _: "flow-matching-shapes" in browser.find_element(By.CSS_SELECTOR, "#figures").text)
        wait.until(lambda _: browser.find_element(By.CSS_SELECTOR, "#class_label").is_displayed())
        choose("class_label", "triangle")
        type_number("seed", 7)
        type_number("steps", 10)
        first = generate()
        assert first.std() > 1 and first.shape[0] > 64  # a grid of colour images, not a blank tile
        assert "seed 7" in browser.find_element(By.CSS_SELECTOR, "#info").text
        # exactly the pipeline's samples for what the page was given (the label, and the model's default guidance)
        expected, _ = model("flow-matching-shapes").sample(num_samples=16, seed=7, steps=10, class_label="triangle")
        np.testing.assert_array_equal(first, np.asarray(picture(expected).convert("RGB")))
        assert "shapes-FD" in browser.find_element(By.CSS_SELECTOR, "#figures").text  # the card's figures
        type_number("seed", 8)
        other = generate()
        assert other.shape == first.shape and not np.array_equal(other, first)
        type_number("seed", 7)
        np.testing.assert_array_equal(generate(), first)  # same seed, same picture
        browser.save_screenshot(str(tmp_path / "demo.png"))
        if SCREENSHOT:
            shutil.copy(tmp_path / "demo.png", SCREENSHOT)
        assert PIL.Image.open(tmp_path / "demo.png").size[0] >= 1000

        type_number("steps", 0)  # a mistake: the pipeline's message in the page, and the page still works
        browser.find_element(By.CSS_SELECTOR, "#generate").click()
        wait.until(lambda _: "num_inference_steps" in browser.find_element(By.TAG_NAME, "body").text)
        type_number("steps", 10)
        type_number("seed", 8)
        np.testing.assert_array_equal(generate(), other)
    finally:
        browser.quit()


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
    out = write_space(str(ZOO / "vae-digits"), tmp_path / "space")
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

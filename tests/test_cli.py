"""The `genzoo` command line, run in-process through `genzoo.cli.main` (and once as a real process)."""

import os
import subprocess
import sys

import numpy as np
import PIL.Image
import pytest
import torch

import genzoo
from genzoo.cli import main
from genzoo.visualize import grid_shape


@pytest.fixture(scope="module")
def image_pipeline(tmp_path_factory):
    """A saved tiny GAN for 1-channel 8x8 images."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("gan")
    genzoo.GANPipeline(genzoo.DCGANGenerator(sample_size=8, latent_dim=8, base_channels=8)).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def vector_pipeline(tmp_path_factory):
    """A saved tiny flow-matching pipeline for 2-D points."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("flow")
    pipe = genzoo.FlowMatchingPipeline(genzoo.MLPDenoiser(hidden_dim=16), genzoo.FlowMatchEulerScheduler())
    pipe.save_pretrained(path)
    return path


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


# ------------------------------------------------------------------------------------------------------- basics
def test_version(capsys):
    code, out, _ = run(capsys, "--version")
    assert (code, out.strip()) == (0, f"genzoo {genzoo.__version__}")


def test_no_command_prints_help(capsys):
    code, out, _ = run(capsys)
    assert code == 0 and "list" in out and "sample" in out


def test_help_names_every_registered_method_a_plugins_included(capsys, example_plugins):
    """`genzoo --help` and `genzoo train --help` name the methods from the registry, not a hand-written list."""
    from genzoo import registry

    methods = registry.names("method")
    assert "moment-matching" in methods  # the example plugin's
    listed = ",".join(methods)
    code, out, _ = run(capsys, "--help")
    assert code == 0 and listed in "".join(out.split())  # argparse wraps the line, even inside "flow-matching"
    code, out, _ = run(capsys, "train", "--method", "moment-matching", "--help")
    out = "".join(out.split())
    assert code == 0 and listed in out and "here--methodmoment-matching" in out


# --------------------------------------------------------------------------------------------------------- list
def test_list_shows_genzoo_components_as_a_table(capsys):
    code, out, err = run(capsys, "list")
    assert (code, err) == (0, "")
    header, *rows = out.splitlines()
    assert header.split() == ["KIND", "NAME", "CLASS", "PACKAGE", "VERSION"]  # read from metadata: no STATUS
    cells = {row.split()[1]: row.split() for row in rows}
    assert cells["GANPipeline"] == ["pipeline", "GANPipeline", "genzoo.pipelines:GANPipeline", "genzoo",
                                    genzoo.__version__]
    code, out, _ = run(capsys, "list", "--check")
    header, *rows = out.splitlines()
    assert header.split() == ["KIND", "NAME", "CLASS", "PACKAGE", "VERSION", "STATUS"]
    assert {row.split()[1]: row.split()[-1] for row in rows}["GANPipeline"] == "ok"
    assert cells["FlowMatchHeunScheduler"][0] == "scheduler" and cells["MLPVAE"][0] == "model"
    assert len({row.index("genzoo.") for row in rows}) == 1  # the CLASS column is aligned


def test_list_one_kind(capsys):
    code, out, _ = run(capsys, "list", "--kind", "scheduler")
    assert code == 0
    assert [row.split()[1] for row in out.splitlines()[1:]] == [
        "DDPMScheduler", "FlowMapEulerScheduler", "FlowMatchEulerScheduler", "FlowMatchHeunScheduler"
    ]


def test_list_shows_plugins_and_broken_ones(example_plugins, capsys):
    code, out, _ = run(capsys, "list", "--kind", "pipeline", "--check")
    assert code == 0
    rows = {row.split()[1]: row for row in out.splitlines()[1:]}
    assert "genzoo-example-plugin  0.1.0" in rows["ExampleFlowPipeline"] and rows["ExampleFlowPipeline"].endswith("ok")
    assert "BROKEN: ModuleNotFoundError: No module named 'genzoo_missing_dependency'" in rows["BrokenPipeline"]
    assert rows["GANPipeline"].endswith("ok")


@pytest.mark.slow
@pytest.mark.subprocess
def test_list_in_a_real_process_with_plugins_installed():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [_plugins_dir(), os.environ.get("PYTHONPATH")])))
    proc = subprocess.run(
        [sys.executable, "-m", "genzoo.cli", "list", "--check"], env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr
    rows = {row.split()[1]: row for row in proc.stdout.splitlines()[1:]}
    assert {"ExampleFlowPipeline", "ShiftedFlowScheduler", "TinyMLPDenoiser", "DDPMPipeline"} <= set(rows)
    assert "genzoo-example-plugin" in rows["ShiftedFlowScheduler"]
    assert "BROKEN" in rows["BrokenPipeline"] and "genzoo_missing_dependency" in rows["BrokenPipeline"]
    assert "Traceback" not in proc.stderr


@pytest.mark.subprocess
@pytest.mark.parametrize("argv", [["--help"], ["list"], ["list", "--kind", "method"], ["sample"],
                                  ["sample", "x", "--num-samples", "0"], ["eval", "--help"], ["frobnicate"]])
def test_answers_without_importing_torch_or_diffusers(argv):
    """Help, the registry's list and argument mistakes need no model: a fresh process answers them without torch,
    Diffusers, transformers or Gradio (`import genzoo` is light; the heavy imports wait for the command that samples,
    trains or serves)."""
    heavy = ("torch", "diffusers", "transformers", "gradio", "accelerate", "datasets")
    code = ("import sys; from genzoo.cli import main; status = main(sys.argv[1:]); "
            f"print('HEAVY', sorted(m for m in {heavy!r} if m in sys.modules)); sys.exit(status)")
    proc = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=120)
    assert proc.stdout.splitlines()[-1] == "HEAVY []", proc.stdout[-2000:] + proc.stderr[-2000:]
    assert proc.returncode == (0 if argv[0] in ("--help", "list") or "--help" in argv else 2)
    assert "Traceback" not in proc.stderr


def _plugins_dir():
    return os.path.join(os.path.dirname(__file__), "plugins")


# ------------------------------------------------------------------------------------------------------- sample
@pytest.mark.parametrize("n, rows, cols", [(16, 4, 4), (7, 3, 3), (8, 2, 4), (1, 1, 1)])
def test_sample_writes_an_image_grid(image_pipeline, tmp_path, capsys, n, rows, cols):
    out_path = tmp_path / "grid.png"
    code, out, err = run(capsys, "sample", image_pipeline, "--num-samples", n, "--out", out_path)
    assert code == 0, err
    assert out.strip() == f"Wrote a {rows}x{cols} grid of {n} images from GANPipeline (seed 0) to {out_path}"
    grid = np.asarray(PIL.Image.open(out_path))
    gap = 4  # grey pixels between and around the tiles
    assert grid.shape[:2] == (gap + rows * (64 + gap), gap + cols * (64 + gap))  # 8x8 tiles enlarged 8x
    code, _, _ = run(capsys, "sample", image_pipeline, "--num-samples", n, "--out", tmp_path / "same.npy")
    images = (np.load(tmp_path / "same.npy")[..., 0] * 255).round().astype(np.uint8)
    last_row, last_col = divmod(n - 1, cols)
    for index, (r, c) in [(0, (0, 0)), (n - 1, (last_row, last_col))]:
        top, left = gap + r * (64 + gap), gap + c * (64 + gap)
        np.testing.assert_array_equal(grid[top : top + 64 : 8, left : left + 64 : 8], images[index])
    assert (grid[:gap] == 128).all()


def test_grid_shape_is_close_to_square():
    for n in range(1, 50):
        rows, cols = grid_shape(n)
        assert n <= rows * cols < n + cols and rows <= cols <= 2 * rows


def test_sample_images_as_npy(image_pipeline, tmp_path, capsys):
    code, _, _ = run(capsys, "sample", image_pipeline, "--num-samples", 3, "--out", tmp_path / "x.npy")
    images = np.load(tmp_path / "x.npy")
    assert code == 0 and images.shape == (3, 8, 8, 1) and images.dtype == np.float32
    assert 0 <= images.min() and images.max() <= 1


def test_sample_vectors_scatter_and_npy(vector_pipeline, tmp_path, capsys):
    code, out, err = run(capsys, "sample", vector_pipeline, "--steps", 4, "--out", tmp_path / "plot.png")
    assert code == 0, err
    assert out.startswith("Wrote a scatter plot of 16 samples from FlowMatchingPipeline")
    assert PIL.Image.open(tmp_path / "plot.png").format == "PNG"

    arrays = []
    for name in ("a.npy", "b.npy"):
        code, out, _ = run(capsys, "sample", vector_pipeline, "--steps", 4, "--seed", 3, "--out", tmp_path / name)
        assert code == 0 and "an array of shape (16, 2)" in out
        arrays.append(np.load(tmp_path / name))
    assert arrays[0].shape == (16, 2)
    np.testing.assert_array_equal(arrays[0], arrays[1])

    run(capsys, "sample", vector_pipeline, "--steps", 4, "--seed", 4, "--out", tmp_path / "c.npy")
    assert not np.array_equal(np.load(tmp_path / "c.npy"), arrays[0])


def test_scatter_plot_without_matplotlib_says_what_to_install(vector_pipeline, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # makes `import matplotlib.figure` fail
    code, out, err = run(capsys, "sample", vector_pipeline, "--steps", 2, "--out", tmp_path / "plot.png")
    assert_usage_error(code, out, err, "pip install matplotlib")


def test_sample_matches_the_python_api(vector_pipeline, tmp_path, capsys):
    run(capsys, "sample", vector_pipeline, "--num-samples", 5, "--steps", 3, "--seed", 1, "--out", tmp_path / "s.npy")
    pipe = genzoo.load_pipeline(vector_pipeline)
    pipe.set_progress_bar_config(disable=True)
    expected = pipe(batch_size=5, generator=torch.Generator().manual_seed(1), num_inference_steps=3, output_type="np")
    np.testing.assert_array_equal(np.load(tmp_path / "s.npy"), expected.samples)


def test_sample_bfloat16(vector_pipeline, tmp_path, capsys):
    out_path = tmp_path / "s.npy"
    code, _, err = run(capsys, "sample", vector_pipeline, "--steps", 2, "--dtype", "bfloat16", "--out", out_path)
    assert code == 0, err
    assert np.load(out_path).dtype == np.float32


def test_sample_a_plugin_pipeline(example_plugins, tmp_path, capsys):
    from genzoo_example_plugin import ExampleFlowPipeline, ShiftedFlowScheduler, TinyMLPDenoiser

    ExampleFlowPipeline(unet=TinyMLPDenoiser(), scheduler=ShiftedFlowScheduler()).save_pretrained(tmp_path / "p")
    code, out, err = run(capsys, "sample", tmp_path / "p", "--steps", 2, "--out", tmp_path / "s.png")
    assert code == 0, err
    assert "from ExampleFlowPipeline" in out


def test_sample_steps_default_to_the_pipelines(vector_pipeline, image_pipeline, tmp_path, capsys):
    """Without --steps a pipeline samples with its own default (flow matching: 50); GANs and VAEs take no steps."""
    code, _, err = run(capsys, "sample", vector_pipeline, "--num-samples", 3, "--out", tmp_path / "s.npy")
    assert code == 0, err
    pipe = genzoo.load_pipeline(vector_pipeline)
    pipe.set_progress_bar_config(disable=True)
    expected = pipe(batch_size=3, generator=torch.Generator().manual_seed(0), num_inference_steps=50, output_type="np")
    np.testing.assert_array_equal(np.load(tmp_path / "s.npy"), expected.samples)
    code, _, err = run(capsys, "sample", image_pipeline, "--num-samples", 2, "--out", tmp_path / "g.npy")
    assert code == 0, err


@pytest.mark.parametrize("suffix", [".npy", ".png"])
def test_a_failed_sample_write_keeps_the_old_file(suffix, image_pipeline, tmp_path, capsys, monkeypatch):
    out_path = tmp_path / f"samples{suffix}"
    code, _, err = run(capsys, "sample", image_pipeline, "--num-samples", 4, "--out", out_path)
    assert code == 0, err
    before = out_path.read_bytes()

    written = []

    def fail_midway(target):  # half a file, then the disk is full
        written.append(os.fspath(getattr(target, "name", None) if hasattr(target, "write") else target))
        if isinstance(target, (str, os.PathLike)):
            with open(target, "ab") as file:
                file.write(b"half a file")
        else:  # an open file
            target.write(b"half a file")
        raise OSError(28, "No space left on device")

    if suffix == ".npy":
        monkeypatch.setattr(np, "save", lambda file, array: fail_midway(file))
    else:
        monkeypatch.setattr("genzoo.visualize.save_samples", lambda samples, path, title="": fail_midway(path))
    code, out, err = run(capsys, "sample", image_pipeline, "--num-samples", 9, "--seed", 1, "--out", out_path)
    assert_usage_error(code, out, err, "No space left on device")
    assert out_path.read_bytes() == before
    assert len(written) == 1 and os.path.dirname(written[0]) == str(tmp_path)  # the half file was beside the output
    assert sorted(p.name for p in tmp_path.iterdir()) == [out_path.name]  # ... and is gone


# ------------------------------------------------------------------------------------------------------- errors
BAD_SAMPLE_ARGS = {
    "missing folder": (["./no/such/folder"], "No such folder"),
    "repo not in cache": (["someone/not-cached"], "not in the local Hub cache"),
    "no model_index.json": (["{empty}"], "has no model_index.json"),
    "bad dtype": (["{vector}", "--dtype", "float64"], "argument --dtype: invalid choice: 'float64'"),
    "zero samples": (["{vector}", "--num-samples", "0"], "expected a positive integer, got 0"),
    "bad steps": (["{vector}", "--steps", "many"], "argument --steps: expected a positive integer"),
    "bad extension": (["{vector}", "--out", "x.jpg"], "use one of .png, .npy"),
    "bad device": (["{vector}", "--device", "gpu0"], "is not a torch device"),
    "no path": ([], "required: PATH_OR_REPO_ID"),
    "nan guidance": (["{vector}", "--guidance-scale", "nan"], "--guidance-scale: expected a finite number >= 0"),
    "inf guidance": (["{vector}", "--guidance-scale=-inf"], "expected a finite number >= 0, got '-inf'"),
    "negative guidance": (["{vector}", "--guidance-scale", "-1"], "expected a finite number >= 0, got '-1'"),
    "seed too large": (["{vector}", "--seed", str(2**64)], f"expected a seed from 0 to {2**32 - 1}, got {2**64}"),
    "negative seed": (["{vector}", "--seed", "-1"], "expected a seed from 0 to"),
    "steps for a GAN": (["{image}", "--steps", "5"], "--steps 5: GANPipeline samples in one pass"),
}


@pytest.mark.parametrize("case", BAD_SAMPLE_ARGS)
def test_sample_errors_are_one_line(case, vector_pipeline, image_pipeline, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty").mkdir()
    args, message = BAD_SAMPLE_ARGS[case]
    args = [a.format(vector=vector_pipeline, image=image_pipeline, empty=tmp_path / "empty") for a in args]
    code, out, err = run(capsys, "sample", *args)
    assert_usage_error(code, out, err, message)
    assert not list(tmp_path.glob("*.png"))


@pytest.mark.parametrize(
    "argv, message",
    [(["list", "--kind", "sampler"], "invalid choice: 'sampler'"), (["frobnicate"], "invalid choice: 'frobnicate'")],
)
def test_usage_errors_are_one_line(argv, message, capsys):
    assert_usage_error(*run(capsys, *argv), message)


def assert_usage_error(code, out, err, message):
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("genzoo: error: ") and message in lines[0]
    assert "Traceback" not in err


# ------------------------------------------------------------------------------------------------------- train
@pytest.mark.slow
def test_train_in_process(tmp_path, capsys):
    code, out, err = run(
        capsys, "train", "--method", "flow-matching", "--dataset", "moons", "--num_samples", "256",
        "--output_dir", tmp_path, "--train_batch_size", "32", "--max_train_steps", "4", "--hidden_dim", "16",
        "--logger", "none", "--num_sample_images", "4", "--num_inference_steps", "2",
    )
    assert code == 0, err
    assert out.strip().endswith(f"Trained 4 steps; pipeline, samples.png and metrics.json are in {tmp_path}")
    assert (tmp_path / "model_index.json").is_file()


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--method", "diffusion"], "No genzoo method named 'diffusion'"),
        (["--dataset", "digitz"], "digits"),
        (["--config", "no-such-recipe.yaml"], "no-such-recipe.yaml: no such file"),
        (["--learning_rate", "fast"], "argument --learning_rate: "),
    ],
)
def test_train_mistakes_are_one_line(capsys, tmp_path, argv, message):
    code, out, err = run(capsys, "train", "--output_dir", tmp_path, "--logger", "none", *argv)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and err.startswith("genzoo: error: ") and message in err
    assert "Traceback" not in err


@pytest.mark.slow
@pytest.mark.subprocess
def test_train_hands_several_processes_to_accelerate_launch():
    from genzoo.cli import accelerate_launch_command

    command = accelerate_launch_command(2, ["--method", "ddpm"])
    assert command[1:3] == ["-m", "accelerate.commands.launch"]
    assert command[command.index("--num_processes") + 1] == "2" and "--multi_gpu" in command
    assert command[-4:] == ["-m", "genzoo.training", "--method", "ddpm"]

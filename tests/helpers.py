"""What the tests share (no test module imports another): the example plugins, tiny pipelines of every family and
of every registered pipeline class, tiny runs of the trainer (genzoo.testing's, plus two processes with `accelerate
launch`), the pieces of the loss tests (methods, batches, generators to replay), and a Hugging Face Hub cache laid out
on disk."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import diffusers
import pytest
import torch
from torch.utils.data import default_collate

import genzoo
from genzoo import registry
from genzoo.testing import SMOKE_DATASETS, tiny_args
from genzoo.testing.methods import smoke_teacher

ROOT = Path(__file__).resolve().parents[1]
PLUGINS = Path(__file__).resolve().parent / "plugins"
PLUGIN_MODULES = ("genzoo_example_plugin", "genzoo_broken_plugin")


@contextlib.contextmanager
def plugins_installed():
    """'Install' the plugin packages in tests/plugins: their ``.dist-info`` folders make importlib.metadata see
    their entry points once the folder is on ``sys.path``. The registry is refreshed on the way in and out, and the
    plugin modules are forgotten, so nothing else sees them."""
    sys.path.insert(0, str(PLUGINS))
    registry.refresh()
    try:
        yield
    finally:
        uninstall_plugins()


@contextlib.contextmanager
def installed(root: Path, *modules: str):
    """'Install' the distributions in the folder ``root`` (``.dist-info`` folders, as :func:`write_distribution`
    writes, and their modules) for the ``with`` block: ``root`` goes on ``sys.path`` and the registry is refreshed;
    on the way out both are undone and the top-level ``modules`` (and their submodules) are forgotten."""
    sys.path.insert(0, str(root))
    registry.refresh()
    try:
        yield Path(root)
    finally:
        sys.path.remove(str(root))
        registry.refresh()
        for name in [n for n in sys.modules if n.partition(".")[0] in modules]:
            del sys.modules[name]


def uninstall_plugins() -> None:
    """Take tests/plugins off ``sys.path``, refresh the registry and forget the plugin modules."""
    while str(PLUGINS) in sys.path:
        sys.path.remove(str(PLUGINS))
    registry.refresh()
    for name in list(sys.modules):
        if name.partition(".")[0] in PLUGIN_MODULES:
            del sys.modules[name]


def write_distribution(root: Path, name: str, version: str, entry_points: str, modules: dict | None = None) -> Path:
    """What ``pip install`` would leave in ``root`` for a package: ``<name>-<version>.dist-info`` with ``METADATA``
    and ``entry_points.txt`` (the text of its ``[group]`` sections), and ``modules`` (file name -> source). Put
    ``root`` on ``sys.path`` and refresh the registry to "install" it."""
    dist_info = Path(root) / f"{name.replace('-', '_')}-{version}.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (dist_info / "entry_points.txt").write_text(entry_points)
    for filename, source in (modules or {}).items():
        (Path(root) / filename).write_text(source)
    return Path(root)


def registered_methods() -> dict[str, type]:
    """Every registered training method, the example plugin's included: name -> class (loaded with the plugins
    installed; use the ``example_plugins`` fixture in a test that trains one)."""
    with plugins_installed():
        return {name: registry.get("method", name) for name in registry.names("method")}


def smoke_cases() -> list[tuple[str, str]]:
    """``(method, dataset)`` for every registered method and every kind of data it trains on."""
    return [(name, SMOKE_DATASETS[kind]) for name, cls in registered_methods().items() for kind in cls.data_kinds]


def registered_pipelines() -> dict[str, type]:
    """Every registered pipeline class, the example plugin's included (the broken plugin's, which fails to import on
    purpose, left out): name -> class (loaded with the plugins installed; use the ``example_plugins`` fixture in a
    test that builds one)."""
    with plugins_installed():
        return {e.name: e.load() for e in registry.entries("pipeline") if e.package != "genzoo-broken-plugin"}


# ------------------------------------------------------------------------------------------------ the trainer
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


#: An HTTP client that reaches 127.0.0.1 directly, whatever proxy the environment names.
LOCAL_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def fetch_local(url: str, timeout: float = 10) -> str:
    """The page at ``url`` (on 127.0.0.1), as text."""
    with LOCAL_HTTP.open(url, timeout=timeout) as response:
        return response.read().decode("utf-8", "replace")


@contextlib.contextmanager
def serving(sources, *flags, env=None, program=None, cwd=None, seconds: float = 120):
    """`genzoo demo SOURCES --port P FLAGS` in its own process on 127.0.0.1, as a user starts it: ``program`` is the
    command (default: this interpreter's ``-m genzoo.cli``; an installed ``genzoo`` script for a wheel), ``env`` the
    process's whole environment (default: this one's; Gradio's analytics always off), its output in a file so a full
    pipe never stalls it. Yields its URL once it serves (within ``seconds``), and stops it afterwards."""
    port = free_port()
    env = {**(os.environ if env is None else env), "GRADIO_ANALYTICS_ENABLED": "False"}
    program = [sys.executable, "-m", "genzoo.cli"] if program is None else list(program)
    with tempfile.TemporaryFile("w+") as log:
        server = subprocess.Popen([*program, "demo", *map(str, sources), "--port", str(port), *flags], env=env,
                                  cwd=cwd, stdout=log, stderr=subprocess.STDOUT, text=True)
        url = f"http://127.0.0.1:{port}/"
        try:
            deadline = time.monotonic() + seconds
            while True:
                try:
                    page = fetch_local(url, timeout=5)
                    break
                except OSError:
                    if server.poll() is not None:
                        log.seek(0)
                        pytest.fail(f"genzoo demo exited: {log.read()[-3000:]}")
                    assert time.monotonic() < deadline, f"genzoo demo did not serve within {seconds:g} s"
                    time.sleep(0.5)
            assert "gradio" in page.lower()
            yield url
        finally:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


def launch_command(script, *args) -> list[str]:
    """``accelerate launch --multi_gpu --num_processes 2`` of ``script`` on the CPU (gloo), one thread per process
    (two torch processes sharing two cores each with two threads run many times slower)."""
    return [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--num_cpu_threads_per_process", "1",
        "--main_process_port", str(free_port()), str(script), *map(str, args),
    ]


#: The two-process runs the tests share (``TwoProcessRuns``): name -> (method, data set, options after tiny_args').
#: Methods that need a teacher get genzoo.testing's smoke teacher.
SHORT = ("--train_batch_size", "8", "--max_train_steps", "3", "--lr_warmup_steps", "0")
TWO_PROCESS_RUNS = {
    "moment-matching": ("moment-matching", "moons", ("--record_batches", "--train_batch_size", "8",
                                                     "--lr_warmup_steps", "0")),  # the example plugin's method
    "meanflow": ("meanflow", "moons", ("--gan_weight", "0.1", *SHORT)),  # JVP and the discriminator under DDP
    "rectified-flow": ("rectified-flow", "moons", ("--num_pairs", "64", "--teacher_steps", "4", *SHORT)),
    "ot-global": ("flow-matching", "moons", ("--coupling", "ot", "--ot_scope", "global", *SHORT)),
    "dmd": ("dmd", "moons", ()),
}


class TwoProcessRuns:
    """Every run of ``TWO_PROCESS_RUNS`` trained in one ``accelerate launch`` of two CPU processes
    (tests/launch_runs.py): the tests of two-process training read their own run's folder, stderr and status. The
    launch's genzoo cache is ``self.cache`` (only the rectified-flow run writes there) and the example plugins are
    installed in it."""

    def __init__(self, root: Path, timeout: float = 900):
        self.root, self.cache = Path(root), Path(root) / "cache"
        with plugins_installed():  # the example plugin's method is one of them
            runs = [{"name": name, "argv": tiny_args(method, dataset, self.folder(name), *extra),
                     "log_dir": str(self.root / "logs" / name)}
                    for name, (method, dataset, extra) in TWO_PROCESS_RUNS.items()]
        runs[list(TWO_PROCESS_RUNS).index("rectified-flow")]["argv"] += [  # its teacher is optional: given here
            "--teacher", str(smoke_teacher("flow-matching", "moons"))]
        (self.root / "runs.json").write_text(json.dumps(runs))
        env = {**os.environ, "OMP_NUM_THREADS": "1", "GENZOO_CACHE": str(self.cache),
               "PYTHONPATH": os.pathsep.join([str(PLUGINS), os.environ.get("PYTHONPATH", "")])}
        self.result = subprocess.run(launch_command(ROOT / "tests" / "launch_runs.py", self.root / "runs.json"),
                                     env=env, capture_output=True, text=True, timeout=timeout)

    def folder(self, name: str) -> Path:
        return self.root / name

    def logs(self, name: str, what: str) -> list[Path]:
        """The run's ``what`` ("stderr" or "status") files of ranks 0 and 1, as tests/launch_runs.py names them."""
        return [self.root / "logs" / name / f"{what}-rank{rank}.txt" for rank in (0, 1)]

    def stderr(self, name: str) -> str:
        return "".join(log.read_text() for log in self.logs(name, "stderr") if log.is_file())

    def check(self, name: str) -> Path:
        """Assert that the run ``name`` succeeded in both processes; returns its folder."""
        statuses = self.logs(name, "status")
        ok = all(s.is_file() and s.read_text() == "0" for s in statuses)
        assert ok, (f"{name}: {[s.read_text() if s.is_file() else None for s in statuses]}\n{self.stderr(name)[-3000:]}"
                    f"\nlaunch (status {self.result.returncode}):\n{self.result.stderr[-2000:]}")
        return self.folder(name)


# ------------------------------------------------------------------------------------------------ loss tests
BATCH = 6
DATA_OPTIONS = {
    "moons": ["--num_samples", "64"],
    "digits": ["--max_train_samples", "64"],
    "digits16": ["--max_train_samples", "16", "--resolution", "16"],
}
_DATA: dict = {}


def data_for(name: str):
    """The training data (loaded once per test session: the digits take a second or two)."""
    from genzoo.data import load_training_data
    from genzoo.training import parse_args

    if name not in _DATA:
        dataset = "digits" if name.startswith("digits") else name
        _DATA[name] = load_training_data(parse_args(["--dataset", dataset, "--seed", "0", *DATA_OPTIONS[name]]))
    return _DATA[name]


def batch_of(name: str, size: int = BATCH) -> dict:
    data = data_for(name)
    return default_collate([data.dataset[i] for i in range(size)])


def build(method_name: str, dataset: str, seed: int = 0, **options):
    """``(method, models, batch)``: the method with its smoke-test options (plus ``options``), its freshly built
    models (seeded) and a collated batch of ``BATCH`` examples."""
    cls = registry.get("method", method_name)
    method = cls(cls.Config(**{**cls.smoke_test_options, **options}), data_for(dataset))
    method.check_conditioning()
    method.check_data()
    torch.manual_seed(seed)
    models = method.build_models()
    return method, models, batch_of(dataset)


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def clone(generator: torch.Generator) -> torch.Generator:
    """A generator in the same state (for replaying the method's draws)."""
    copy = torch.Generator()
    copy.set_state(generator.get_state())
    return copy


def assert_same_state(a: torch.Generator, b: torch.Generator) -> None:
    assert torch.equal(a.get_state(), b.get_state()), "the method drew more or less randomness than the replay"


def per_example(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``(B,)`` -> broadcastable against ``like``."""
    return t.reshape(t.shape[0], *([1] * (like.ndim - 1)))


# ------------------------------------------------------------------------------------------------ tiny pipelines


def tiny_unet(channels=1, size=8, **kwargs):
    return diffusers.UNet2DModel(
        **kwargs,
        sample_size=size,
        in_channels=channels,
        out_channels=channels,
        block_out_channels=(8, 16),
        norm_num_groups=8,
        layers_per_block=1,
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
    )


def tiny_autoencoder(channels=1, size=8):
    return diffusers.AutoencoderKL(
        in_channels=channels,
        out_channels=channels,
        sample_size=size,
        block_out_channels=(8, 8),
        norm_num_groups=8,
        latent_channels=2,
        layers_per_block=1,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
    )


def tiny_pipeline(family: str, data: str, seed: int = 0):
    """A randomly initialised pipeline of ``family`` (gan, vae, ddpm, flow-matching, flow-map) for ``data`` (image, vector)."""
    torch.manual_seed(seed)
    image = data == "image"
    if family == "gan":
        model = (
            genzoo.DCGANGenerator(sample_size=8, latent_dim=8, base_channels=8, max_channels=16)
            if image
            else genzoo.MLPGenerator(hidden_dim=16)
        )
        pipe = genzoo.GANPipeline(generator=model)
    elif family == "vae":
        pipe = genzoo.VAEPipeline(vae=tiny_autoencoder() if image else genzoo.MLPVAE(hidden_dim=16, latent_dim=2))
    else:
        # a flow map takes a second time (the interval r - t) as UNet2DModel's "timestep" class embedding
        extra = {"class_embed_type": "timestep"} if family == "flow-map" else {}
        unet = tiny_unet(**extra) if image else genzoo.MLPDenoiser(hidden_dim=16, num_layers=2, time_embed_dim=16, **extra)
        if family == "ddpm":
            pipe = genzoo.DDPMPipeline(unet=unet, scheduler=genzoo.DDPMScheduler())
        elif family == "flow-map":
            pipe = genzoo.FlowMapPipeline(unet=unet, scheduler=genzoo.FlowMapEulerScheduler())
        else:
            pipe = genzoo.FlowMatchingPipeline(unet=unet, scheduler=genzoo.FlowMatchEulerScheduler())
    pipe.set_progress_bar_config(disable=True)
    return pipe


FAMILIES = ("gan", "vae", "ddpm", "flow-matching", "flow-map")
#: family -> its pipeline class (a registered pipeline class is built from the tiny components of its family)
FAMILY_PIPELINES = {
    "gan": genzoo.GANPipeline,
    "vae": genzoo.VAEPipeline,
    "ddpm": genzoo.DDPMPipeline,
    "flow-matching": genzoo.FlowMatchingPipeline,
    "flow-map": genzoo.FlowMapPipeline,
}


def tiny_pipeline_of(pipeline_class: type, data: str, seed: int = 0):
    """A randomly initialised ``pipeline_class`` (any registered pipeline, a plugin's included) for ``data`` (image,
    vector): the tiny components of the family it belongs to (:func:`tiny_pipeline`)."""
    families = [f for f, base in FAMILY_PIPELINES.items() if issubclass(pipeline_class, base)]
    if not families:
        raise ValueError(f"{pipeline_class.__name__} subclasses none of {[c.__name__ for c in FAMILY_PIPELINES.values()]}"
                         "; teach tests/helpers.py's tiny_pipeline_of to build it.")
    family = min(families, key=lambda f: pipeline_class.__mro__.index(FAMILY_PIPELINES[f]))  # the nearest base
    pipe = pipeline_class(**tiny_pipeline(family, data, seed).components)
    pipe.set_progress_bar_config(disable=True)
    return pipe


#: Captions of the tiny text-conditional pipelines.
CAPTIONS = ["a handwritten seven", "the digit 7", "a handwritten one", "the digit 1", "1", "7"]


def text_pipeline(family="flow-matching", seed=0):
    from diffusers import UNet2DConditionModel

    from genzoo.text import build_caption_tokenizer, build_text_encoder

    torch.manual_seed(seed)
    tokenizer = build_caption_tokenizer(CAPTIONS, model_max_length=8)
    text_encoder = build_text_encoder(tokenizer, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                      intermediate_size=32)
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 16), layers_per_block=1,
        norm_num_groups=8, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=16, attention_head_dim=8,
    )
    scheduler = genzoo.DDPMScheduler(num_train_timesteps=50) if family == "ddpm" else genzoo.FlowMatchEulerScheduler()
    cls = genzoo.DDPMPipeline if family == "ddpm" else genzoo.FlowMatchingPipeline
    pipe = cls(unet=unet, scheduler=scheduler, tokenizer=tokenizer, text_encoder=text_encoder)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def samples_of(pipe, seed=0, batch_size=3, steps=4, **kwargs):
    """Seeded samples as a tensor, whatever the pipeline and data kind."""
    out = pipe(
        batch_size=batch_size,
        generator=torch.Generator().manual_seed(seed),
        num_inference_steps=steps,
        output_type="pt",
        **kwargs,
    )
    return out.images if hasattr(out, "images") else out.samples


def put_in_hub_cache(folder: Path, cache_dir: Path, repo_id: str, commit: str | None = None, branch="main") -> str:
    """Lay ``folder`` out as ``huggingface_hub`` stores a downloaded repo: blobs, a snapshot of symlinks, a ref.

    Returns the commit hash (made from the content unless given). Calling it again with other content and the
    same branch adds a second commit and moves the branch, like a second push followed by a download.
    """
    repo_dir = Path(cache_dir) / f"models--{repo_id.replace('/', '--')}"
    files = sorted(p for p in Path(folder).rglob("*") if p.is_file())
    if commit is None:
        digest = hashlib.sha1()
        for path in files:
            digest.update(str(path.relative_to(folder)).encode() + path.read_bytes())
        commit = digest.hexdigest()
    snapshot = repo_dir / "snapshots" / commit
    for path in files:
        data = path.read_bytes()
        blob = repo_dir / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        target = snapshot / path.relative_to(folder)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(os.path.relpath(blob, target.parent))
    (repo_dir / "refs").mkdir(parents=True, exist_ok=True)
    (repo_dir / "refs" / branch).write_text(commit)
    return commit


def copy_tree(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def chromium(width: int = 1400, height: int = 1000):
    """Headless Chromium through Selenium (Debian's chromium and chromium-driver), for the demo's and the site's
    browser tests; a missing browser skips, or fails under GENZOO_REQUIRE_BROWSER (as in CI)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (binary and driver):
        if os.environ.get("GENZOO_REQUIRE_BROWSER"):
            pytest.fail("chromium and chromedriver are required here (apt-get install chromium chromium-driver)")
        pytest.skip("no chromium/chromedriver (apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", f"--window-size={width},{height}"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(driver), options=options)

"""Small builders shared by the tests: tiny pipelines of every family and a Hugging Face Hub cache laid out on disk."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import sys
from pathlib import Path

import diffusers
import torch

import genzoo
from genzoo import registry

PLUGINS = Path(__file__).resolve().parent / "plugins"
PLUGIN_MODULES = ("genzoo_example_plugin", "genzoo_broken_plugin")
#: The built-in data set the shared tests train each kind of data on.
SMOKE_DATASETS = {"image": "digits", "vector": "moons"}


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


def options_to_argv(options: dict) -> list[str]:
    """``{"block_out_channels": [8, 16], "attention": True}`` -> ``["--block_out_channels", "8,16", ...]``."""
    argv = []
    for key, value in options.items():
        if isinstance(value, (list, tuple)):
            value = ",".join(map(str, value))
        elif isinstance(value, bool):
            value = str(value).lower()
        argv += [f"--{key}", str(value)]
    return argv


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

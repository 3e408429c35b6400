"""The demo's session (:class:`DemoBackend`): which models it serves, the one refusal for any other name, the
bounded cache of models typed into the box, and the page's calls (describe, generate, compare) without the page."""

from __future__ import annotations

import collections
import io
import ipaddress
import os
import random
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import PIL.Image

from ..checks import check_bool, check_int, check_number, describe, error_line
from ..files import OutsideFolderError, folder_files
from ..visualize import grid_shape, image_grid, scatter_figure
from .limits import (
    CONCURRENCY_LIMIT,
    MAX_CACHE_BYTES,
    MAX_GUIDANCE,
    MAX_LABEL_CHARS,
    MAX_MODEL_BYTES,
    MAX_NAME_CHARS,
    MAX_PROMPT_CHARS,
    MAX_QUEUE,
    MAX_SAMPLE_STEPS,
    MAX_SAMPLES,
    MAX_SECONDS_PER_REQUEST,
    MAX_SEED,
    MAX_STEPS,
    OWN_SOLVER,
    USER_ERRORS,
    RequestTimeout,
    _whole,
    check_text,
)
from .model import Model


def zoo_folders() -> tuple[Path, ...]:
    """Where ``genzoo demo`` looks for models when it is given none: the ``pipelines/`` folder of the working
    directory, else of the source checkout genzoo runs from."""
    return Path.cwd() / "pipelines", Path(__file__).resolve().parents[3] / "pipelines"


def zoo_sources() -> list[str]:
    """The folders of the zoo (``pipelines/<name>`` with a ``model_index.json``), from the first place that has one."""
    for root in zoo_folders():
        found = sorted(str(p) for p in root.glob("*") if (p / "model_index.json").is_file())
        if found:
            return found
    return []


def data_background(dataset: str | None, n: int = 20000) -> np.ndarray | None:
    """The density drawn under a 2-D model's samples: ``n`` points of the registered data set ``dataset``
    (:meth:`genzoo.data.DataSet.demo_background`, plugins' data sets included); ``None`` for images and for a data set
    no package registers (a folder, a Hub id)."""
    from ..data.sets import get_dataset

    data = get_dataset(dataset) if dataset else None
    return None if data is None else data.demo_background(n)


#: The demo's pictures are at least this many pixels on their longer side: a small grid (16 digits of 8x8 pixels) is
#: enlarged by a whole factor, nearest-neighbour, so it shows at a readable size and every pixel stays visible.
MIN_PICTURE_SIZE = 512


def picture(samples: np.ndarray, title: str = "", dataset: str | None = None) -> PIL.Image.Image:
    """Samples as a picture: an image grid of at least :data:`MIN_PICTURE_SIZE` pixels on its longer side, or a
    scatter plot over the data's density for 2-D points (its title wrapped to the figure's width; a description's
    `` — ...`` remark is left out of it)."""
    if samples.ndim == 4:
        grid = PIL.Image.fromarray(image_grid(samples, *grid_shape(len(samples))))
        factor = -(-MIN_PICTURE_SIZE // max(grid.size))  # ceil
        if factor > 1:
            grid = grid.resize((grid.width * factor, grid.height * factor), PIL.Image.NEAREST)
        return grid
    title = textwrap.fill(title.split(" — ")[0], 40)
    fig = scatter_figure(samples, title=title, background=data_background(dataset))
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return PIL.Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def _is_hub_id(text: str) -> bool:
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(text)
    except HFValidationError:
        return False
    return True


def _looks_like_a_path(name: str) -> bool:
    """Hub ids are ``name`` or ``namespace/name``; anything else is meant as a folder (the loader's own rule)."""
    from ..pipelines.resolve import looks_like_a_path

    return looks_like_a_path(name)


def is_loopback(host: str) -> bool:
    """Whether ``host`` serves this machine only (127.0.0.1, ::1, localhost)."""
    if host in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class DemoBackend:
    """What the demo serves and how much one request may cost; :func:`build_demo` puts a page on it.

    The models are resolved once, here: a folder to its absolute path (it must hold ``model_index.json``), a Hub id
    kept as the id (fetched, with the operator's token, when first used). The page's model box serves these by name
    and refuses anything else with one fixed message (:meth:`refusal`), which says nothing of what exists on the
    server -- unless ``allow_any_model``.

    Args:
        sources (list[str] | None): saved pipeline folders or Hub ids (default: every pipeline of the zoo).
        allow_any_model (bool): also load what visitors type into the model box: a pipeline folder on this machine
            (it must hold ``model_index.json``, nothing in it may lead outside it, its files at most
            ``max_model_bytes``) or a Hub id (at most ``max_model_bytes`` of files, checked before downloading,
            downloaded into a temporary folder that is removed once loaded). Off by default.
        share_token_with_visitors (bool): fetch the Hub ids visitors type with the operator's token (their private
            and gated models become reachable to every visitor). Off by default: visitors' Hub ids are fetched
            anonymously (``token=False``).
        max_model_bytes (int): the most bytes of files a model typed into the box may have.
        max_cache_bytes (int): the most bytes of weights (parameters and buffers) of models typed into the box kept
            in memory at once; the least recently used go first. The started models are loaded once and kept (the
            operator chose them), outside this bound.
        max_seconds_per_request (float): a request stops after this many seconds, its wait for a busy model
            included (checked before every sampling step; one-pass models, GANs and VAEs, are a single cheap call).

    Raises:
        ValueError: no sources, a source that is neither a pipeline folder nor a valid Hub id, or a bad bound.
        FileNotFoundError: a source folder without ``model_index.json``.
    """

    def __init__(self, sources: list[str] | None = None, *, allow_any_model: bool = False,
                 share_token_with_visitors: bool = False, max_model_bytes: int = MAX_MODEL_BYTES,
                 max_cache_bytes: int = MAX_CACHE_BYTES, max_seconds_per_request: float = MAX_SECONDS_PER_REQUEST):
        self.allow_any_model = check_bool("allow_any_model", allow_any_model)
        self.share_token_with_visitors = check_bool("share_token_with_visitors", share_token_with_visitors)
        self.max_model_bytes = check_int("max_model_bytes", max_model_bytes)
        self.max_cache_bytes = check_int("max_cache_bytes", max_cache_bytes)
        self.max_seconds_per_request = check_number("max_seconds_per_request", max_seconds_per_request, 0)
        sources = [os.fspath(s) for s in sources] if sources else zoo_sources()
        if not sources:
            raise ValueError("no models to show: pass folders or Hub ids (genzoo demo PATH_OR_REPO_ID ...); the zoo's "
                             "pipelines/ folder was not found.")
        self.models: dict[str, Model] = {}  # the started models, by the name the page shows: pinned
        for source in sources:
            model = self._started(source)
            if model.name in self.models:  # two folders of one name: the second by its full path
                model.name = model.source
            self.models[model.name] = model
        self._typed: collections.OrderedDict = collections.OrderedDict()  # resolved target -> Model, oldest first
        self._typed_bytes: dict = {}
        self._lock = threading.Lock()

    @staticmethod
    def _started(source: str) -> Model:
        path = Path(source).expanduser()
        if path.is_dir():
            folder = Path(os.path.realpath(path))
            if not (folder / "model_index.json").is_file():
                raise FileNotFoundError(f"{source} has no model_index.json: give folders written by save_pretrained "
                                        "or genzoo train, or Hub ids.")
            return Model(str(folder), name=folder.name)
        if _looks_like_a_path(source) or not _is_hub_id(source):
            raise ValueError(f"{describe(source)} is neither a pipeline folder nor a valid Hub id.")
        return Model(source)  # the operator's model: fetched with the operator's token, when first used

    # ------------------------------------------------------------------------------------------------ the model box
    def refusal(self, name) -> str:
        """The one message for a name that is not served: the same whether it is a folder, a file, a Hub id or
        nothing at all, so the box tells a visitor nothing about the server."""
        return (f"model {describe(name, 40)} is not served by this demo; choose one of: "
                f"{', '.join(self.models)}.")

    def model_for(self, name) -> Model:
        """The model the box names: a started one by its name; with ``allow_any_model`` a folder or Hub id."""
        if not isinstance(name, str):
            raise ValueError(f"model must be text, got {describe(name)} (type {type(name).__name__}).")
        name = name.strip()
        if name in self.models:
            return self.models[name]
        if not self.allow_any_model:
            raise ValueError(self.refusal(name))
        if not name:
            raise ValueError(f"choose a model: one of {', '.join(self.models)}, or a pipeline folder or Hub id.")
        check_text("model", name, MAX_NAME_CHARS)
        key, model = self._resolve_typed(name)
        with self._lock:
            if key in self._typed:
                self._typed.move_to_end(key)
                return self._typed[key]
        try:
            size = model.resident_bytes  # loads it
        except USER_ERRORS:
            raise
        except Exception as exc:  # a download cut short, a connection refused, ...
            raise OSError(f"could not load {describe(name)}: {error_line(exc)}") from None
        if size > self.max_cache_bytes:
            raise ValueError(f"model {describe(name)} takes {size} bytes of weights in memory, more than the "
                             f"{self.max_cache_bytes} bytes this demo keeps for models typed into the box.")
        with self._lock:
            if key in self._typed:  # loaded meanwhile by another request
                self._typed.move_to_end(key)
                return self._typed[key]
            self._typed[key] = model
            self._typed_bytes[key] = size
            while sum(self._typed_bytes.values()) > self.max_cache_bytes:
                old, _ = self._typed.popitem(last=False)
                del self._typed_bytes[old]
        return model

    def cached(self) -> list[str]:
        """The models typed into the box that are in memory, least recently used first."""
        with self._lock:
            return [m.name for m in self._typed.values()]

    def _resolve_typed(self, name: str):
        """(the resolved target, a :class:`Model` not yet loaded) for a folder or Hub id typed into the box."""
        if _looks_like_a_path(name) or Path(name).is_dir():
            return self._typed_folder(name)
        if not _is_hub_id(name):
            raise ValueError(f"model {describe(name)} is neither a pipeline folder (one holding model_index.json) "
                             "nor a Hub model id.")
        return self._typed_hub_id(name)

    def _typed_folder(self, name: str):
        not_a_pipeline = (f"model {describe(name)} is neither a pipeline folder (one holding model_index.json) nor "
                          "a Hub model id.")
        try:
            folder = Path(os.path.realpath(name))
            if not (folder.is_dir() and (folder / "model_index.json").is_file()):
                raise ValueError(not_a_pipeline)
            files = folder_files(folder)  # refuses any link that leads outside the folder (a component, a file)
            size = sum(path.stat().st_size for path in files)
        except OutsideFolderError:
            raise
        except OSError:  # unreadable: the same answer as missing
            raise ValueError(not_a_pipeline) from None
        if size > self.max_model_bytes:
            raise ValueError(f"model {describe(name)} has {size} bytes of files, more than the {self.max_model_bytes} "
                             "bytes this demo loads for a model typed into the box.")
        return ("folder", str(folder)), Model(str(folder), name=name)

    def _typed_hub_id(self, name: str):
        from huggingface_hub import HfApi
        from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

        token = None if self.share_token_with_visitors else False
        try:
            info = HfApi().model_info(name, files_metadata=True, token=token)
        except (RepositoryNotFoundError, RevisionNotFoundError):
            why = "" if self.share_token_with_visitors else " (this demo fetches visitors' models without a token)"
            raise ValueError(f"Hub model {name} was not found, or it is private or gated{why}.") from None
        except Exception as exc:  # offline, unreachable, refused: one line
            raise OSError(f"could not look up Hub model {name}: {error_line(exc)}") from None
        from ..pipelines.untrusted import PICKLE_SUFFIXES  # never downloaded, so not counted

        files = [s for s in (info.siblings or []) if not s.rfilename.endswith(PICKLE_SUFFIXES)]
        unknown = [s.rfilename for s in files if s.size is None]
        size = sum(s.size or 0 for s in files)
        if unknown or size > self.max_model_bytes:
            what = f"files of unknown size ({', '.join(unknown[:3])})" if unknown else f"{size} bytes of files"
            raise ValueError(f"Hub model {name} has {what}, more than the {self.max_model_bytes} bytes this demo "
                             "downloads for a model typed into the box.")
        return ("hub", name, info.sha), Model(name, token=token, revision=info.sha, fresh_cache=True)

    # --------------------------------------------------------------------------------------------- the page's calls
    def describe(self, name) -> dict:
        """What the page shows for the model ``name``: :meth:`Model.controls`, its card's figures and the settings
        they were measured with."""
        model = self.model_for(name)
        controls = model.controls()
        figures = model.figures_markdown()
        card = controls["card"]
        if card is not None:
            measured = [f"{card['steps']} steps"] if card["steps"] is not None else []
            if card["guidance"] is not None:
                measured.append(f"guidance {card['guidance']:g}")
            figures += (f"\n\nMeasured with {', '.join(measured)}: the page's defaults." if measured else
                        "\n\nMeasured in one pass, as the page samples it.")
        return {**controls, "figures": figures}

    def generate(self, name, num_samples, seed, randomize=False, steps=None, solver=OWN_SOLVER, class_label=None,
                 guidance_scale=None, prompt="", negative_prompt="", progress=None):
        """Sample one model: (the picture, the seed used, a one-line description of the settings that drew it,
        and whether they are its card's). What the model does not take is ignored (:meth:`Model.sample`)."""
        model = self.model_for(name)
        if check_bool("randomize", randomize):
            seed = random.randint(0, MAX_SEED)
        elif seed is None:
            seed = 0
        if progress is not None:
            progress(0, desc=f"loading {model.name}")
        samples, what = model.sample(num_samples=num_samples, seed=seed, steps=steps, solver=solver,
                                     class_label=class_label, guidance_scale=guidance_scale, prompt=prompt,
                                     negative_prompt=negative_prompt, max_seconds=self.max_seconds_per_request)
        return picture(samples, what, model.dataset), int(_whole(seed)), what

    def datasets(self) -> list[str]:
        return sorted({m.dataset for m in self.models.values() if m.dataset})

    def compare(self, dataset, num_samples, seed, progress=None) -> list:
        """Every started model trained on ``dataset``, sampled with one seed at its own default settings (its card's,
        :attr:`Model.default_steps`), all within one request's time."""
        check_text("data set", dataset, MAX_LABEL_CHARS)
        chosen = [m for m in self.models.values() if m.dataset == dataset]
        if not chosen:
            raise ValueError(f"no model trained on {describe(dataset)}; data sets of these models: "
                             f"{', '.join(self.datasets())}.")
        num_samples = check_int("samples", _whole(num_samples), 1, MAX_SAMPLES, "the demo's bound")
        seed = check_int("seed", _whole(seed), 0, MAX_SEED)
        start = time.monotonic()
        gallery = []
        for model in (progress.tqdm(chosen, desc="models") if progress is not None else chosen):
            left = self.max_seconds_per_request - (time.monotonic() - start)
            if left <= 0:
                raise RequestTimeout(f"compare stopped after {len(gallery)} of {len(chosen)} models: this demo allows "
                                     f"at most {self.max_seconds_per_request:g} s per request.")
            samples, what = model.sample(num_samples=num_samples, seed=seed, max_seconds=left)
            gallery.append((picture(samples, what, dataset), f"{model.name} -- {what}"))
        return gallery

    # ------------------------------------------------------------------------------------------------- in public
    def exposure(self, host: str) -> str:
        """What a visitor of ``host`` can reach and spend: the models, whether any other may be loaded, whether the
        operator's Hub token is used, and the bounds (``genzoo demo --host`` prints it for a non-loopback host)."""
        from huggingface_hub import get_token

        has_token = get_token() is not None
        hub_ids = [m.name for m in self.models.values() if not m.local]
        if not self.allow_any_model:
            typed = "off: only the models above; any other name gets one fixed refusal"
        else:
            typed = (f"ON (--allow-any-model): visitors may load any pipeline folder on this machine that holds "
                     f"model_index.json, and any Hub model of at most {self.max_model_bytes} bytes of files; at most "
                     f"{self.max_cache_bytes} bytes of their weights are kept in memory")
        if not has_token:
            token = "none found (HF_TOKEN, hf auth login)"
        else:
            used = [f"for the started Hub models ({', '.join(hub_ids)})"] if hub_ids else []
            if self.allow_any_model and self.share_token_with_visitors:
                used.append("for ANY Hub id a visitor types (--share-token-with-visitors)")
            token = "found; used " + " and ".join(used) if used else "found; never used for visitors' requests"
        return "\n".join([
            f"genzoo demo on {host}: whoever can reach this address can use it.",
            f"  models served: {', '.join(self.models)}",
            f"  models typed into the box: {typed}",
            f"  the operator's Hub token: {token}",
            f"  bounds per request: samples 1..{MAX_SAMPLES}, sampling steps 1..{MAX_STEPS}, samples x steps "
            f"<= {MAX_SAMPLE_STEPS}, seed 0..{MAX_SEED}, "
            f"guidance scale 0..{MAX_GUIDANCE:g}, prompts up to {MAX_PROMPT_CHARS} characters, "
            f"{self.max_seconds_per_request:g} s",
            f"  queue: {CONCURRENCY_LIMIT} samplings of more than one step at a time, one per model, one-step "
            f"requests beside them; at most {MAX_QUEUE} requests waiting",
        ])


"""Where a pipeline name points: a local folder as it is, or a Hub repo id downloaded into the Hub cache (pickled
weights left out unless asked for), with every failure -- a missing folder, an invalid id, a private, gated or
absent repo, no network, ``HF_HUB_OFFLINE`` -- a one-line :class:`~genzoo.model_index.PipelineLoadError` that says
what to do. Nothing in the folder is read here but the place of its ``model_index.json``."""

from __future__ import annotations

import os
from pathlib import Path

import huggingface_hub
from huggingface_hub.errors import (
    GatedRepoError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from ..model_index import MODEL_INDEX, PipelineLoadError, check_in_folder, folder_root
from .untrusted import PICKLE_SUFFIXES


def resolve_pretrained_path(
    pretrained_model_name_or_path: str | os.PathLike,
    revision: str | None = None,
    token: str | bool | None = None,
    cache_dir: str | os.PathLike | None = None,
    local_files_only: bool = False,
    allow_pickle: bool = False,
) -> Path:
    """A local folder as it is, or a Hub repo id downloaded with ``huggingface_hub.snapshot_download`` (its snapshot
    folder in the Hub cache, whose files are links into the repo's cache folder: ``folder_root`` of it, which the
    loader uses as the folder that links may lead into).

    ``revision``, ``token``, ``cache_dir``, ``local_files_only`` and ``HF_HUB_OFFLINE`` are honoured. Pickled weights
    are not even downloaded unless ``allow_pickle=True``. A ``model_index.json`` that leads outside the folder, or is
    not a regular file, is refused here, unread.
    """
    name = os.fspath(pretrained_model_name_or_path)
    path = Path(name).expanduser()
    if path.is_dir():
        folder = path
    elif path.exists():
        raise PipelineLoadError(f"{name} is a file; a pipeline is a folder with {MODEL_INDEX} in it.")
    elif looks_like_a_path(name):
        raise PipelineLoadError(f"No such folder: {name}")
    else:
        folder = _download(name, revision, token, cache_dir, local_files_only, allow_pickle)
    index = folder / MODEL_INDEX
    if not os.path.lexists(index):
        raise PipelineLoadError(
            f"{name} is not a pipeline: it has no {MODEL_INDEX}. Point at a folder written by "
            "`save_pretrained` (or a Hub repo pushed by genzoo)."
        )
    check_in_folder(folder_root(folder), index)
    if not index.is_file():
        raise PipelineLoadError(f"{index} is not a regular file (a folder, device, FIFO, socket or broken link); a "
                                f"pipeline's {MODEL_INDEX} is a JSON file.")
    return folder


def looks_like_a_path(name: str) -> bool:
    """Hub ids are ``name`` or ``namespace/name``; anything else that does not exist is a missing folder."""
    return name.startswith((".", "/", "~")) or "\\" in name or name.count("/") > 1 or name.endswith("/")


def _download(repo_id, revision, token, cache_dir, local_files_only, allow_pickle) -> Path:
    try:
        huggingface_hub.utils.validate_repo_id(repo_id)
    except huggingface_hub.errors.HFValidationError as exc:
        raise PipelineLoadError(f"{repo_id!r} is neither an existing folder nor a valid Hub repo id ({exc}).") from None
    not_local = f"{repo_id} is not a local folder"
    offline = local_files_only or huggingface_hub.constants.HF_HUB_OFFLINE
    try:
        snapshot = huggingface_hub.snapshot_download(
            repo_id,
            revision=revision,
            token=token,
            cache_dir=cache_dir,
            local_files_only=offline,
            ignore_patterns=None if allow_pickle else [f"*{s}" for s in PICKLE_SUFFIXES],
        )
    except LocalEntryNotFoundError as exc:
        where = f" at {cache_dir}" if cache_dir else ""
        if offline:
            why = "HF_HUB_OFFLINE=1" if huggingface_hub.constants.HF_HUB_OFFLINE else "local_files_only=True"
            raise PipelineLoadError(
                f"{not_local}, and Hub repo {repo_id} (revision {revision or 'main'}) is not in the local Hub cache"
                f"{where}, and {why} forbids downloading it. Download it once while online, or point at a local folder."
            ) from None
        raise PipelineLoadError(
            f"{not_local}; the Hub could not be reached for {repo_id} (revision {revision or 'main'}) and it is not in "
            f"the local Hub cache{where}: {' '.join(str(exc).split())}"
        ) from None
    except GatedRepoError:
        raise PipelineLoadError(f"{repo_id} is gated: accept its conditions on the Hub and pass a token.") from None
    except RepositoryNotFoundError:
        raise PipelineLoadError(
            f"{not_local}, and Hub repo {repo_id} was not found, or it is private and no valid token was given "
            "(pass `token=` or log in with `hf auth login`)."
        ) from None
    except RevisionNotFoundError:
        raise PipelineLoadError(f"Hub repo {repo_id} has no revision {revision!r}.") from None
    except huggingface_hub.errors.HfHubHTTPError as exc:
        raise PipelineLoadError(f"Could not download {repo_id} from the Hub: {exc}") from None
    except OSError as exc:  # connection errors and the like
        raise PipelineLoadError(f"Could not download {repo_id} from the Hub: {exc}") from None
    return Path(snapshot)

"""The checks of a pipeline folder's files, which may come from anyone: run before genzoo or the libraries'
``from_pretrained`` build a model or read a weight.

A folder (or a Hub download) controls its ``model_index.json``, its configs and its weights, so each is checked for
what it could make the loader do: read through a symlink outside the folder's root or open a device, FIFO or socket
(:func:`check_component_folder`), unpickle weights (:func:`check_safe_weights`), parse a lying safetensors header
(:func:`read_safetensors_header`), build a model of millions of layers from a config number
(:func:`check_config_numbers`, :func:`expected_tensors` within a build budget), load tensors that are not the
model's (:func:`compare_weights`), hand NaN or inf weights to the sampler (:func:`check_finite_weights`), or make a
pipeline class from components it does not take (:func:`check_recorded_components`). Every refusal is a one-line
:class:`~genzoo.model_index.PipelineLoadError` naming the component, the file and the value.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import math
import os
import re
import stat
import threading
import warnings
from pathlib import Path

import torch

from ..checks import describe
from ..files import folder_files
from ..model_index import (
    MODEL_INDEX,
    PipelineLoadError,
    check_in_folder,
    component_entries,
    folder_root,
    one_line,
    read_json_object,
)

#: Suffixes of pickled weights: loaded only with ``allow_pickle=True``, and not even downloaded without it.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")


def check_safe_weights(folder: Path, component: str, allow_pickle: bool) -> None:
    """Refuse a component folder whose weights exist only as pickles, unless the caller opted in."""
    sub = folder / component
    if not sub.is_dir():
        return
    files = [p.name for p in sub.iterdir() if p.is_file()]
    has_safetensors = any(name.endswith(".safetensors") for name in files)
    pickles = sorted(name for name in files if name.endswith(PICKLE_SUFFIXES))
    if pickles and not has_safetensors and not allow_pickle:
        raise PipelineLoadError(
            f"Component {component!r} has only pickled weights ({', '.join(pickles)}) and no .safetensors file. "
            "Unpickling can run arbitrary code, so genzoo refuses it. If you trust the source, pass "
            "allow_pickle=True (or convert the weights to safetensors)."
        )



# ---------------------------------------------------------------------------------------------- checking weights
#: Bytes per element of the safetensors dtypes.
SAFETENSORS_DTYPES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "F8_E8M0": 1, "U16": 2, "I16": 2, "F16": 2, "BF16": 2,
    "U32": 4, "I32": 4, "F32": 4, "C64": 8, "U64": 8, "I64": 8, "F64": 8,
}
#: The safetensors format's own limit on the JSON header.
MAX_SAFETENSORS_HEADER = 100 * 2**20
#: Numbers in a component's config up to this size are always allowed (see :func:`check_config_numbers`).
CONFIG_NUMBER_FLOOR = 2**20
#: Building a model on the meta device may register at most this many modules, parameters and buffers per non-empty
#: tensor of its weights (plus :data:`BUILD_BUDGET_BASE`), and never more than :data:`BUILD_BUDGET`; every genzoo,
#: Diffusers and transformers model registers two to four per tensor. Zero-size tensors do not count (they take no
#: bytes, so a header could list millions), and non-empty ones cannot share bytes (:func:`read_safetensors_header`).
BUILD_BUDGET_PER_TENSOR = 16
BUILD_BUDGET_BASE = 256
#: The most modules, parameters and buffers a meta-device build may register, whatever the weights' header claims.
#: The largest real models register far fewer (measured on the meta device): SDXL's UNet2DConditionModel 3609, Flux's
#: transformer 2430, SD 1.5's UNet 1394, CLIP ViT-bigG's text encoder 910, T5-XXL's encoder 636, SD's AutoencoderKL
#: 490. A build stopped at the budget takes about 1.5 s of CPU on the meta device.
BUILD_BUDGET = 16384
#: Tensor names shown in an error message before "and N more".
SHOWN_NAMES = 5

WEIGHT_FILES = {  # model kind -> (single file, shard index) as Diffusers and transformers name them
    "diffusers": ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.safetensors.index.json"),
    "transformers": ("model.safetensors", "model.safetensors.index.json"),
}


def model_kind(cls) -> str | None:
    """``"diffusers"`` for a ``diffusers.ModelMixin`` (genzoo's and plugins' models included), ``"transformers"``
    for a transformers model, ``None`` for the rest (schedulers, tokenizers: configuration files only)."""
    from diffusers import ModelMixin

    if isinstance(cls, type) and issubclass(cls, ModelMixin):
        return "diffusers"
    if cls.__module__.startswith("transformers") and hasattr(cls, "can_generate"):
        return "transformers"
    return None


def _names(names, limit: int = SHOWN_NAMES) -> str:
    names = sorted(names)
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def read_safetensors_header(path: Path, root=None) -> dict[str, tuple[str, tuple[int, ...]]]:
    """``{tensor name: (dtype, shape)}`` from a safetensors file's header, without reading the tensors.

    The format is an 8-byte little-endian header length, a JSON header with ``dtype``, ``shape`` and
    ``data_offsets`` for each tensor, then the data. A header that does not parse, names an unknown dtype, places a
    tensor outside the file (a truncated download) or two tensors on the same bytes is a :class:`PipelineLoadError`
    naming the file; so is a path that leads outside the folder ``root`` (when given) and one that is not a regular
    file (a device or FIFO: refused unread, without blocking). At most 8 bytes plus the header, itself at most
    :data:`MAX_SAFETENSORS_HEADER` and within the file's size, are read.
    """
    path = Path(path)

    def bad(why: str) -> PipelineLoadError:
        return PipelineLoadError(f"{path} is not a valid safetensors file: {why}.")

    if root is not None:
        check_in_folder(root, path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
        with os.fdopen(fd, "rb") as handle:
            status = os.fstat(handle.fileno())
            if not stat.S_ISREG(status.st_mode):
                raise PipelineLoadError(f"{path} is not a regular file (a device, FIFO or socket); a safetensors file "
                                        "is refused unread.")
            size = status.st_size
            prefix = handle.read(8)
            if len(prefix) < 8:
                raise bad(f"it has {size} bytes, fewer than the 8 of the header length")
            length = int.from_bytes(prefix, "little")
            if length > MAX_SAFETENSORS_HEADER or 8 + length > size:
                raise bad(f"its header length {length} does not fit the file ({size} bytes; truncated?)")
            raw = handle.read(length)
            if len(raw) < length:
                raise bad(f"its header of {length} bytes ends early, after {len(raw)} (truncated?)")
    except PipelineLoadError:
        raise
    except OSError as exc:
        raise PipelineLoadError(f"{path} cannot be read: {one_line(exc.strerror or exc)}") from None
    try:
        header = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError) as exc:
        raise bad(f"its header is not JSON ({one_line(exc, 120)})") from None
    if not isinstance(header, dict):
        raise bad("its header is not a JSON object")
    data_size = size - 8 - length
    tensors, spans = {}, []
    # The header is JSON, so its numbers are exactly int or float (and bool is not an int here): plain type checks
    # keep a header of hundreds of thousands of entries to a second or so.
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if type(info) is not dict:
            raise bad(f"tensor {describe(name)} has no dtype/shape/data_offsets")
        dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
        itemsize = SAFETENSORS_DTYPES.get(dtype) if type(dtype) is str else None
        if itemsize is None:
            raise bad(f"tensor {describe(name)} has an unknown dtype {describe(dtype)}")
        if type(shape) is not list or any(type(d) is not int or d < 0 for d in shape):
            raise bad(f"tensor {describe(name)} has a bad shape {describe(shape)}")
        if (type(offsets) is not list or len(offsets) != 2 or type(offsets[0]) is not int
                or type(offsets[1]) is not int or not 0 <= offsets[0] <= offsets[1]):
            raise bad(f"tensor {describe(name)} has bad data_offsets {describe(offsets)}")
        numel = math.prod(shape)
        if offsets[1] - offsets[0] != numel * itemsize:
            raise bad(f"tensor {describe(name)} of shape {tuple(shape)} and dtype {dtype} does not match its "
                      f"data_offsets {offsets}")
        if offsets[1] > data_size:
            raise bad(f"tensor {describe(name)} ends at byte {offsets[1]} of the data, which has {data_size} "
                      "(the file is truncated)")
        tensors[name] = (dtype, tuple(shape))
        if numel:
            spans.append((offsets[0], offsets[1], name))
    spans.sort()
    for (_, end, first), (start, _, second) in zip(spans, spans[1:]):
        if start < end:
            raise bad(f"tensors {describe(first)} and {describe(second)} share bytes (their data_offsets overlap)")
    return tensors


def weight_files(sub: Path, component: str, kind: str, root=None) -> list[Path] | None:
    """The safetensors file(s) of a model component: the single file, or the shards its index lists; ``None`` if
    there is no safetensors file but there are pickles (loaded only with ``allow_pickle=True``, which the caller
    has checked). A folder without weights is a :class:`PipelineLoadError` naming the file it should have."""
    single, index = WEIGHT_FILES[kind]
    if (sub / single).is_file():
        return [sub / single]
    if (sub / index).is_file():
        weight_map = read_json_object(sub / index, f"Component {component!r}:", root).get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise PipelineLoadError(f"Component {component!r}: {sub / index} has no weight_map of shard files.")
        shards = sorted({shard if isinstance(shard, str) else "" for shard in weight_map.values()})
        for shard in shards:
            if Path(shard).name != shard or shard in ("", ".", ".."):
                raise PipelineLoadError(
                    f"Component {component!r}: {sub / index} names a shard that is not a file name in the component "
                    f"folder: {describe(shard) if shard else 'not a string'}."
                )
            if not (sub / shard).is_file():
                raise PipelineLoadError(f"Component {component!r}: shard {sub / shard} (listed in {index}) is missing.")
        return [sub / shard for shard in shards]
    if any(p.name.endswith(PICKLE_SUFFIXES) for p in sub.iterdir() if p.is_file()):
        return None
    raise PipelineLoadError(
        f"Component {component!r}: {sub} has no weights; expected {single} (safetensors) next to its config.json."
    )


def check_config_numbers(component: str, config, limit: int, label: str) -> None:
    """Refuse a config that asks for more than its weights can hold, before anything is built.

    The rule: every number in the config (nested in lists and objects; booleans aside) must be finite and at most
    ``limit`` in absolute value, where ``limit = max(total elements of the component's weights, 2**20)`` (just
    ``2**20`` for components without weights, such as schedulers). No valid config comes near it: a model's sizes,
    widths, layer, class and token counts are each bounded by its parameter count (a layer of width ``w`` has at
    least ``w`` parameters), and the ``2**20`` floor leaves room for values that are not (sample sizes, token ids,
    training timesteps). ``num_layers: 10000000`` or ``hidden_dim: 10**9`` on a model of a few hundred thousand
    weights is refused here, instead of building ten million layers or running out of memory.
    """

    def walk(value, where: str):
        if isinstance(value, bool) or value is None or isinstance(value, str):
            return
        if isinstance(value, (int, float)):
            if isinstance(value, float) and not math.isfinite(value):
                raise PipelineLoadError(f"Component {component!r}: {label} has {where} = {value}; numbers in a config "
                                        "must be finite.")
            if abs(value) > limit:
                raise PipelineLoadError(
                    f"Component {component!r}: {label} has {where} = {describe(value, 40)}, more than the "
                    f"{limit} allowed for a model with these weights (the largest of 2**20 and their element "
                    "count); the config is corrupt or does not belong to these weights."
                )
        elif isinstance(value, dict):
            for key, item in value.items():
                walk(item, f"{where}.{key}" if where else str(key))
        elif isinstance(value, (list, tuple)):
            for i, item in enumerate(value):
                walk(item, f"{where}[{i}]")

    walk(config, "")


class _BuildBudgetExceeded(Exception):
    pass


@contextlib.contextmanager
def _build_budget(limit: int):
    """Raise :class:`_BuildBudgetExceeded` as soon as more than ``limit`` modules, parameters and buffers have been
    registered (torch's global registration hooks), so a config asking for millions of layers stops early."""
    count, owner = [0], threading.get_ident()

    def hook(*args):
        if threading.get_ident() != owner:  # the hooks are process-wide; count this thread's build only
            return
        count[0] += 1
        if count[0] > limit:
            raise _BuildBudgetExceeded()

    modules = torch.nn.modules.module
    handles = [
        modules.register_module_module_registration_hook(hook),
        modules.register_module_parameter_registration_hook(hook),
        modules.register_module_buffer_registration_hook(hook),
    ]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


@contextlib.contextmanager
def _quiet_libraries():
    """Diffusers' and transformers' warnings off (the real load says the same things once)."""
    from diffusers.utils import logging as diffusers_logging

    level = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        diffusers_logging.set_verbosity(level)


def expected_tensors(cls, kind: str, component: str, config: dict, num_tensors: int) -> dict[str, tuple]:
    """``{name: (shape, floating point?)}`` of the state dict of ``cls`` built from ``config`` on the meta device
    (no memory for weights), within a budget of registered modules and tensors proportional to the weights'
    ``num_tensors`` (the non-empty ones) and never above :data:`BUILD_BUDGET`, whatever the header claims."""
    budget = min(BUILD_BUDGET_PER_TENSOR * num_tensors + BUILD_BUDGET_BASE, BUILD_BUDGET)
    try:
        with _quiet_libraries(), _build_budget(budget), torch.device("meta"):
            if kind == "diffusers":
                model = cls.from_config(config)
            else:
                model = cls._from_config(cls.config_class.from_dict(dict(config)))
            return {name: (tuple(tensor.shape), tensor.is_floating_point() or tensor.is_complex())
                    for name, tensor in model.state_dict().items()}
    except _BuildBudgetExceeded:
        raise PipelineLoadError(
            f"Component {component!r}: its config.json builds a {cls.__name__} of more than {budget} modules and "
            f"tensors, while its weights hold {num_tensors} tensors with data (allowed: {BUILD_BUDGET_PER_TENSOR} per "
            f"such tensor plus {BUILD_BUDGET_BASE}, at most {BUILD_BUDGET}); the config does not belong to these "
            "weights."
        ) from None
    except Exception as exc:  # any error of the model's constructor: the config is not one this class accepts
        raise PipelineLoadError(
            f"Component {component!r}: its config.json does not build a {cls.__name__}: "
            f"{type(exc).__name__}: {one_line(exc)}"
        ) from exc


def _ignored(cls, attribute: str, name: str) -> bool:
    patterns = getattr(cls, attribute, None) or ()
    if isinstance(patterns, dict):
        patterns = list(patterns)
    try:
        return any(re.search(str(pattern), name) for pattern in patterns)
    except (re.error, TypeError):
        return False


def compare_weights(cls, component: str, files: list[Path], expected: dict, found: dict) -> None:
    """Refuse weights that do not match the model their config builds: tensors missing, extra, of another shape,
    or integers where the model has floating-point values (or the reverse), named in the message (a few, then a
    count). ``expected``: ``{name: (shape, floating point?)}``; ``found``: ``{name: (safetensors dtype, shape)}``."""
    missing = [n for n in expected if n not in found and not _ignored(cls, "_keys_to_ignore_on_load_missing", n)
               and not _ignored(cls, "_tied_weights_keys", n)]
    extra = [n for n in found if n not in expected and not _ignored(cls, "_keys_to_ignore_on_load_unexpected", n)]
    shapes = [n for n in expected if n in found and tuple(found[n][1]) != tuple(expected[n][0])]
    kinds = [n for n in expected if n in found and n not in shapes
             and found[n][0].startswith(("F", "BF", "C")) != expected[n][1]]
    if not (missing or extra or shapes or kinds):
        return
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing ({_names(missing)})")
    if extra:
        problems.append(f"{len(extra)} unexpected ({_names(extra)})")
    if shapes:
        shown = [f"{n} is {tuple(found[n][1])}, expected {tuple(expected[n][0])}" for n in sorted(shapes)[:SHOWN_NAMES]]
        more = f" and {len(shapes) - SHOWN_NAMES} more" if len(shapes) > SHOWN_NAMES else ""
        problems.append(f"{len(shapes)} of the wrong shape ({'; '.join(shown)}{more})")
    if kinds:
        shown = [f"{n} is {found[n][0]}, expected {'floating point' if expected[n][1] else 'integers'}"
                 for n in sorted(kinds)[:SHOWN_NAMES]]
        more = f" and {len(kinds) - SHOWN_NAMES} more" if len(kinds) > SHOWN_NAMES else ""
        problems.append(f"{len(kinds)} of the wrong dtype ({'; '.join(shown)}{more})")
    where = files[0] if len(files) == 1 else f"{files[0].parent} (shards)"
    raise PipelineLoadError(
        f"Component {component!r}: the tensors in {where} do not match the {cls.__name__} its config.json "
        f"describes: {', '.join(problems)}."
    )


def check_finite_weights(component: str, model) -> None:
    """Refuse a loaded model with NaN or infinite values in its floating-point weights or buffers."""
    bad, values, total = [], 0, 0
    for name, tensor in model.state_dict().items():
        if not (tensor.is_floating_point() or tensor.is_complex()):
            continue
        total += 1
        count = int((~torch.isfinite(tensor)).sum())
        if count:
            bad.append(name)
            values += count
    if bad:
        dtype = getattr(model, "dtype", None)
        raise PipelineLoadError(
            f"Component {component!r}: {len(bad)} of its {total} floating-point tensors hold {values} non-finite "
            f"values (NaN or inf; {_names(bad)}) as {dtype}; the weights are broken (a diverged training run, a "
            "corrupt file, or values too large for this dtype)."
        )


def check_component_folder(root: Path, sub: Path, component: str) -> None:
    """Refuse a component folder holding anything the libraries' ``from_pretrained`` should not open: a symlink that
    leads outside ``root`` (the folder itself, a file, a folder within) or a device, FIFO or socket. The whole
    folder is walked (:func:`genzoo.files.folder_files`: links that stay inside are followed, each folder once), so
    every file Diffusers or transformers may read (configs, weights, shard indexes and shards, tokenizer files) is
    covered."""
    what = f"Component {component!r}:"
    check_in_folder(root, sub, what)
    try:
        folder_files(root, under=sub, refuse_others=True)
    except OSError as exc:  # genzoo's own message (the path and where it leads): whole, on one line
        raise PipelineLoadError(f"{what} {' '.join(str(exc).split())}") from None


def check_component_files(cls, component: str, sub: Path, root: Path | None = None) -> None:
    """The checks of a component's files that need no weights loaded: configs readable and sane, weights present
    and matching the model the config builds (see :func:`check_config_numbers` and :func:`expected_tensors`), and
    every file inside ``root`` (default: :func:`~genzoo.model_index.folder_root` of the pipeline folder)."""
    root = folder_root(sub.parent) if root is None else root
    what = f"Component {component!r}:"
    kind = model_kind(cls)
    if kind is None:
        config_name = getattr(cls, "config_name", None)  # Diffusers' ConfigMixin (schedulers); tokenizers have none
        if isinstance(config_name, str) and config_name:
            config = read_json_object(sub / config_name, what, root)
            check_config_numbers(component, config, CONFIG_NUMBER_FLOOR, config_name)
        return
    config = read_json_object(sub / "config.json", what, root)
    files = weight_files(sub, component, kind, root)
    found = {}
    for path in files or ():
        found.update(read_safetensors_header(path, root))
    total = sum(math.prod(shape) for _, shape in found.values())
    check_config_numbers(component, config, max(total, CONFIG_NUMBER_FLOOR), "config.json")
    if files is not None:
        with_data = sum(1 for _, shape in found.values() if math.prod(shape))
        compare_weights(cls, component, files, expected_tensors(cls, kind, component, config, with_data), found)


def check_recorded_components(pipeline_class, model_index: dict, supplied=()) -> None:
    """Refuse a ``model_index.json`` whose components do not fit ``pipeline_class``, before any component file is
    read: an entry for one of the class's components (its ``__init__`` arguments without a default, and its
    ``_optional_components``) that is not ``[library, class]`` / ``[null, null]``; a component the class requires
    (no default) that is missing or recorded as absent and not ``supplied`` by the caller; a component the class
    does not take. Names and entries are checked by :func:`~genzoo.model_index.component_entries` on the way."""
    entries = component_entries(model_index)
    parameters = inspect.signature(pipeline_class.__init__).parameters
    named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    accepted = {name for name, p in parameters.items() if name != "self" and p.kind in named}
    required = {name for name in accepted if parameters[name].default is inspect.Parameter.empty}
    modules = required | (set(getattr(pipeline_class, "_optional_components", None) or ()) & accepted)
    cls = pipeline_class.__name__
    for name in sorted(modules):
        value = model_index.get(name)
        if name in model_index and value is not None and name not in entries:
            raise PipelineLoadError(
                f"{MODEL_INDEX} entry {name!r} must be [\"library\", \"ClassName\"] or [null, null] (absent), got "
                f"{describe(value)}."
            )
        if name not in required or name in supplied:
            continue
        if name not in model_index:
            raise PipelineLoadError(
                f"{MODEL_INDEX} has no entry for component {name!r}, which {cls} requires (its components: "
                f"{', '.join(sorted(modules))})."
            )
        if value is None or None in entries[name]:
            raise PipelineLoadError(
                f"{MODEL_INDEX} records component {name!r} as absent ([null, null]), but {cls} requires it."
            )
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return
    for name, (library, class_name) in entries.items():
        if name not in accepted and library is not None and class_name is not None:
            raise PipelineLoadError(
                f"{MODEL_INDEX} records a component {name!r} ({library}.{class_name}) that {cls} does not take "
                f"(its components: {', '.join(sorted(modules))})."
            )

"""Fingerprints of what genzoo computes, to show a refactor changed nothing: every zoo pipeline's seeded samples and
every zoo recipe's weights after a few training steps, as sha256 digests of the exact tensor bytes (CPU, one thread).

    python tests/fingerprints.py --write   # record them (tests/fingerprints.json), before a refactor
    python tests/fingerprints.py --write dmd-class-digits   # record a new zoo folder beside the others
    python tests/fingerprints.py           # compare, after it (tests/test_fingerprints.py does the same)

A digest changes with any bit of any value, so record them again only for a change that is meant to alter numbers,
and say so in its commit message.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
ZOO = ROOT / "pipelines"
STORE = Path(__file__).resolve().parent / "fingerprints.json"
#: Training steps of a recipe's fingerprint, and the batch it trains with.
TRAIN_STEPS, TRAIN_BATCH = 3, 16


def digest(tensors) -> str:
    h = hashlib.sha256()
    for t in tensors:
        t = torch.as_tensor(t).detach().contiguous().cpu()
        h.update(str(tuple(t.shape)).encode() + str(t.dtype).encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def zoo_names() -> list[str]:
    return sorted(p.name for p in ZOO.iterdir() if (p / "model_index.json").is_file())


def sample_kwargs(pipe) -> dict:
    """Small, seeded calls every family accepts: a few samples, a few steps where the family takes steps."""
    import inspect

    params = inspect.signature(pipe.__call__).parameters
    kwargs = {"batch_size": 4, "generator": torch.Generator().manual_seed(0), "output_type": "pt"}
    if "num_inference_steps" in params and getattr(pipe, "scheduler", None) is not None:
        kwargs["num_inference_steps"] = 4
    if "prompt" in params and getattr(pipe, "text_encoder", None) is not None:
        kwargs.pop("batch_size")
        kwargs["prompt"] = ["a small red circle in the top left", "a big blue square"] * 2
    elif "class_labels" in params and getattr(pipe, "num_class_embeds", None):
        kwargs["class_labels"] = [0, 1, 2, 1]
    return kwargs


def sample_fingerprint(name: str) -> str:
    import genzoo

    pipe = genzoo.load_pipeline(str(ZOO / name))
    kwargs = sample_kwargs(pipe)
    out = pipe(**kwargs)
    values = out.images if hasattr(out, "images") else out[0]
    return digest([values])


def train_fingerprint(name: str, workdir: Path) -> str:
    from safetensors.torch import load_file

    from genzoo.training.trainer import main as train_main

    recipe = yaml.safe_load((ZOO / name / "recipe.yaml").read_text())
    out = workdir / name
    argv = ["--config", str(ZOO / name / "recipe.yaml"), "--output_dir", str(out), "--max_train_steps",
            str(TRAIN_STEPS), "--train_batch_size", str(TRAIN_BATCH), "--checkpointing_steps", "1000",
            "--save_images_steps", "1000", "--num_sample_images", "4", "--num_inference_steps", "2",
            "--lr_warmup_steps", "1"]  # the final sample grid in 2 steps: it does not touch the weights
    for option in ("teacher", "vae"):
        value = recipe.get(option)
        if isinstance(value, str) and value.startswith("pipelines/"):
            argv += [f"--{option}", str(ROOT / value)]
    if recipe.get("max_train_samples") is None:
        argv += ["--max_train_samples", "64"]
    train_main(argv)
    files = sorted(out.glob("*/*.safetensors"))
    tensors = []
    for f in files:
        state = load_file(str(f))
        tensors += [state[k] for k in sorted(state)]
    return digest(tensors)


def compute(names=None, train=True) -> dict:
    torch.set_num_threads(1)
    names = names or zoo_names()
    found = {"samples": {}, "training": {}}
    for name in names:
        found["samples"][name] = sample_fingerprint(name)
    if train:
        with tempfile.TemporaryDirectory() as tmp:
            for name in names:
                found["training"][name] = train_fingerprint(name, Path(tmp))
    return found


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true")
    parser.add_argument("names", nargs="*")
    args = parser.parse_args(argv)
    found = compute(args.names)
    if args.write:  # named pipelines (a new zoo folder) join the recorded ones; no names records every one afresh
        if args.names and STORE.is_file():
            stored = json.loads(STORE.read_text())
            found = {part: {**stored[part], **found[part]} for part in found}
        STORE.parent.mkdir(exist_ok=True)
        STORE.write_text(json.dumps(found, indent=1, sort_keys=True) + "\n")
        print(f"wrote {STORE}")
        return 0
    stored = json.loads(STORE.read_text())
    bad = [(part, n) for part in found for n in found[part] if stored[part].get(n) != found[part][n]]
    for part, n in bad:
        print(f"changed: {part} {n}")
    print("same" if not bad else f"{len(bad)} changed")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

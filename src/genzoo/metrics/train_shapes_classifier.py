"""Train the shapes classifier behind ``genzoo.metrics.shapes`` (shapes-FD, precision/recall, prompt faithfulness).

    python -m genzoo.metrics.train_shapes_classifier            # writes shapes_classifier.safetensors + .json here

Trains :class:`~genzoo.metrics.shapes.ShapesClassifier` on ``--pool`` images drawn afresh with
:func:`genzoo.data.shapes.render` from a seed stream of its own, ``numpy.random.default_rng([seed, 0xC1A55])``
(the splits use ``[split seed, 0x5A7E5]``), so no image of "train", "test" or "unseen" is ever trained on. Unlike
the splits, the pool holds **every** (shape, colour) pair, the held-out :data:`~genzoo.data.shapes.UNSEEN_PAIRS`
included, each attribute uniform: the classifier is a measuring instrument and must read every composition a model
may make, held-out ones above all. It also holds 0 to 4 shapes per image (the data have 1 or 2), so that blank
images and extra shapes are read as such. Images are rendered at 16, 32 or 64 pixels (a quarter, a half, a quarter)
and brought to 32 as every input is (bilinear up, area down), and half of each batch gets Gaussian pixel noise of a
random strength (up to ``--noise`` in [-1, 1] units), for robustness to what models make. Each step also shows it
``--outliers`` noise images (uniform, smooth and sparse colour noise) with the target "uniform" on every head --
outlier exposure, as for the digits classifier -- so that noise lands away from the data in feature space.

Seed 0, AdamW with a one-cycle cosine learning rate, a fixed number of steps (no early stopping, no model selection
on a held-out split). It then reports the accuracies per attribute on the "test" and "unseen" splits at 32x32 (and,
for information, at 16 and 64), refuses to write weights when any of shape, colour, size and position is below
``--min_accuracy`` (98 %) on either, and writes the weights (safetensors) and a JSON sidecar (accuracies, seed,
architecture, hyperparameters, versions, date, sha256 of the weights). Single-threaded on CPU by default, a few
minutes; deterministic for a given torch build.

Accuracies (per split and resolution): ``shape`` -- of the quadrants holding a shape, the fraction whose shape is
read right (not "empty", not another shape); ``colour`` and ``size`` -- of the same quadrants, the fraction whose
colour (size) head is right; ``position`` -- the fraction of images whose set of occupied quadrants is read exactly;
``all`` -- the fraction of images whose every quadrant is read exactly (shape, colour, size or empty).
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..data.shapes import COLOURS, POSITIONS, SHAPES, SIZES, ShapeSpec, objects_to_slots, render, shapes_split
from .shapes import (
    EMPTY,
    FEATURE_DIM,
    HEAD_SIZES,
    IMAGE_SIZE,
    NUM_SLOTS,
    SIDECAR_PATH,
    WEIGHTS_PATH,
    ShapesClassifier,
    decode_slots,
    resize_to_classifier,
    split_logits,
    weights_sha256,
)

#: Second entry of the pool's seed sequence: the splits use 0x5A7E5, so the streams never meet.
POOL_STREAM = 0xC1A55
#: Resolutions the pool is rendered at, and their shares.
POOL_RESOLUTIONS = {16: 0.25, 32: 0.5, 64: 0.25}
#: Shares of images with 0, 1, 2, 3, 4 shapes in the pool.
POOL_COUNTS = (0.05, 0.45, 0.35, 0.10, 0.05)
ACCURACY_ATTRIBUTES = ("shape", "colour", "size", "position")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pool", type=int, default=16_000, help="freshly drawn training images")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--batch_size", type=int, default=112)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--weight_decay", type=float, default=1e-2)
    parser.add_argument("--noise", type=float, default=0.08, help="largest std of the added pixel noise ([-1, 1] units)")
    parser.add_argument("--outliers", type=int, default=16, help="noise images per step (outlier exposure), 0: none")
    parser.add_argument("--outlier_weight", type=float, default=0.5)
    parser.add_argument("--other_resolutions", default="16,64",
                        help="comma-separated resolutions to also report accuracies at (for information; '' for none)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--min_accuracy", type=float, default=0.98,
                        help="refuse to write weights when an attribute's accuracy on test or unseen is below this")
    parser.add_argument("--weights", type=Path, default=WEIGHTS_PATH)
    parser.add_argument("--sidecar", type=Path, default=SIDECAR_PATH)
    return parser.parse_args(argv)


def draw_any_objects(rng: np.random.Generator) -> list[ShapeSpec]:
    """0 to 4 shapes (:data:`POOL_COUNTS`) in distinct quadrants, every attribute uniform: all compositions."""
    count = int(rng.choice(len(POOL_COUNTS), p=POOL_COUNTS))
    return [
        ShapeSpec(SHAPES[rng.integers(len(SHAPES))], COLOURS[rng.integers(len(COLOURS))],
                  SIZES[rng.integers(len(SIZES))], POSITIONS[p])
        for p in rng.permutation(len(POSITIONS))[:count]
    ]


def to_input(pixels: np.ndarray) -> torch.Tensor:
    """uint8 (N, R, R, 3) -> float32 (N, 3, 32, 32) in [-1, 1], resized as the metrics resize their inputs."""
    x = torch.from_numpy(np.array(pixels)).permute(0, 3, 1, 2).double() / 255  # a copy: splits are read-only
    return (resize_to_classifier(x) * 2 - 1).float().contiguous()


def draw_pool(size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``size`` training images (float32 (N, 3, 32, 32) in [-1, 1]) and their slots (int64 (N, 4, 3))."""
    rng = np.random.default_rng([seed, POOL_STREAM])
    resolutions, shares = list(POOL_RESOLUTIONS), list(POOL_RESOLUTIONS.values())
    images, slots = torch.empty(size, 3, IMAGE_SIZE, IMAGE_SIZE), np.empty((size, NUM_SLOTS, 3), dtype=np.int64)
    for i in range(size):
        resolution = resolutions[rng.choice(len(resolutions), p=shares)]
        objects = draw_any_objects(rng)
        images[i] = to_input(render(objects, resolution, rng)[None])[0]
        slots[i] = objects_to_slots(objects)
    return images, torch.from_numpy(slots)


def outlier_images(n: int, generator: torch.Generator) -> torch.Tensor:
    """n non-shape RGB images in [-1, 1]: a third uniform pixel noise, a third smooth noise (2x2 to 8x8 uniform noise
    upsampled bilinearly), a third sparse noise (a dark background with each pixel lit at random with p 0.3)."""
    size = IMAGE_SIZE
    kinds = (torch.arange(n) % 3)[:, None, None, None]
    uniform = torch.rand(n, 3, size, size, generator=generator) * 2 - 1
    grids = torch.randint(2, 9, (n,), generator=generator).tolist()
    smooth = torch.cat([
        F.interpolate(torch.rand(1, 3, g, g, generator=generator) * 2 - 1, size=size, mode="bilinear",
                      align_corners=False)
        for g in grids
    ])
    lit = torch.rand(n, 1, size, size, generator=generator) < 0.3
    background = torch.rand(n, 1, 1, 1, generator=generator) * 0.6 - 0.9
    sparse = torch.where(lit, torch.rand(n, 3, size, size, generator=generator) * 2 - 1, background.expand(n, 3, size, size))
    return torch.where(kinds == 0, uniform, torch.where(kinds == 1, smooth, sparse))


def add_noise(x: torch.Tensor, max_std: float, generator: torch.Generator) -> torch.Tensor:
    """Gaussian pixel noise on half the images, std uniform in [0, max_std], clipped to [-1, 1]."""
    if max_std <= 0:
        return x
    std = torch.rand(len(x), 1, 1, 1, generator=generator) * max_std
    std = std * (torch.rand(len(x), 1, 1, 1, generator=generator) < 0.5)
    return (x + std * torch.randn(x.shape, generator=generator)).clamp(-1, 1)


def slot_loss(logits: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of shape-or-empty on every quadrant, plus of colour and size on the occupied ones."""
    shape, colour, size = split_logits(logits)
    occupied = slots[..., 0] >= 0
    shape_target = torch.where(occupied, slots[..., 0], torch.full_like(slots[..., 0], EMPTY))
    loss = F.cross_entropy(shape.reshape(-1, HEAD_SIZES[0]), shape_target.reshape(-1))
    if occupied.any():
        loss = loss + F.cross_entropy(colour[occupied], slots[..., 1][occupied])
        loss = loss + F.cross_entropy(size[occupied], slots[..., 2][occupied])
    return loss


def uniform_loss(logits: torch.Tensor) -> torch.Tensor:
    """Cross-entropy to uniform probabilities on every head of every quadrant (outlier exposure)."""
    return -sum(F.log_softmax(part, dim=-1).mean() for part in split_logits(logits))


def slot_accuracies(predicted: np.ndarray, true: np.ndarray) -> dict:
    """Accuracies per attribute (module docstring) of predicted slots against true ones, both int (N, 4, 3)."""
    occupied = true[..., 0] >= 0
    return {
        "shape": float((predicted[..., 0] == true[..., 0])[occupied].mean()),
        "colour": float((predicted[..., 1] == true[..., 1])[occupied].mean()),
        "size": float((predicted[..., 2] == true[..., 2])[occupied].mean()),
        "position": float(((predicted[..., 0] >= 0) == occupied).all(1).mean()),
        "all": float((predicted == true).all((1, 2)).mean()),
    }


@torch.no_grad()
def split_accuracies(model: ShapesClassifier, split: str, resolution: int = IMAGE_SIZE) -> dict:
    model.eval()
    data = shapes_split(split, resolution)
    x = to_input(data.pixels)
    logits = torch.cat([model(x[i : i + 1000]) for i in range(0, len(x), 1000)])
    return slot_accuracies(decode_slots(logits.numpy()), data.slots)


def train(args: argparse.Namespace) -> tuple[ShapesClassifier, dict]:
    """Train with ``args``; torch's global RNG, thread count and determinism flag are restored afterwards."""
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    try:
        with torch.random.fork_rng(devices=[]):
            torch.set_num_threads(args.threads)
            torch.use_deterministic_algorithms(True)
            torch.manual_seed(args.seed)
            return _train(args)
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)


def _train(args: argparse.Namespace) -> tuple[ShapesClassifier, dict]:
    start = time.perf_counter()
    generator = torch.Generator().manual_seed(args.seed)
    x_pool, slots_pool = draw_pool(args.pool, args.seed)
    print(f"drew {args.pool} training images ({time.perf_counter() - start:.0f} s)")
    model = ShapesClassifier()
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=args.lr, total_steps=args.steps, pct_start=0.1)
    batch_size = min(args.batch_size, args.pool)
    order, position = torch.randperm(args.pool, generator=generator), 0
    model.train()
    for step in range(args.steps):
        if position + batch_size > len(order):  # a new epoch: reshuffle, drop the last partial batch
            order, position = torch.randperm(args.pool, generator=generator), 0
        batch = order[position : position + batch_size]
        position += batch_size
        x = add_noise(x_pool[batch], args.noise, generator)
        if args.outliers:
            x = torch.cat([x, outlier_images(args.outliers, generator)])
        logits = model(x)
        loss = slot_loss(logits[:batch_size], slots_pool[batch])
        if args.outliers:  # outlier exposure (Hendrycks et al. 2019): noise gets uniform probabilities
            loss = loss + args.outlier_weight * uniform_loss(logits[batch_size:])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        if (step + 1) % 250 == 0 or step + 1 == args.steps:
            print(f"step {step + 1}/{args.steps}  loss {loss.item():.4f}  ({time.perf_counter() - start:.0f} s)")
    seconds = time.perf_counter() - start
    model.eval()
    accuracy = {split: split_accuracies(model, split) for split in ("test", "unseen")}
    info = {
        "accuracy": accuracy,
        "accuracy_other_resolutions": {
            str(r): {split: split_accuracies(model, split, r) for split in ("test", "unseen")}
            for r in (int(r) for r in args.other_resolutions.split(",") if r.strip())
        },
        "accuracy_definitions": "shape/colour/size: of the quadrants holding a shape, the fraction read right "
        "(shape: not empty and the right shape); position: images whose set of occupied quadrants is read exactly; "
        "all: images whose every quadrant is read exactly. Splits rendered at 32x32 unless stated.",
        "seed": args.seed,
        "pool_size": args.pool,
        "pool": f"numpy default_rng([seed, {POOL_STREAM:#x}]) (the splits use [split seed, 0x5a7e5]); every "
        f"(shape, colour) pair, UNSEEN_PAIRS included, attributes uniform; 0, 1, 2, 3, 4 shapes with shares "
        f"{list(POOL_COUNTS)}; rendered at {list(POOL_RESOLUTIONS)} px with shares "
        f"{list(POOL_RESOLUTIONS.values())}, resized to 32 (bilinear up, area down)",
        "test_size": len(shapes_split("test").slots),
        "unseen_size": len(shapes_split("unseen").slots),
        "architecture": "conv1 3->16 3x3 pad1 ReLU; conv2 16->16 3x3 pad1 ReLU maxpool2 (16x16); conv3 16->32 3x3 "
        "pad1 ReLU maxpool2 (8x8); conv4 32->64 3x3 pad1 ReLU maxpool2 (4x4); flatten 1024; "
        f"fc1 1024->{FEATURE_DIM} (features: these pre-activations); ReLU; dropout 0.2; heads {FEATURE_DIM}->44 "
        "(per quadrant: 5 shape-or-empty, 4 colour, 2 size logits)",
        "input": "(B, 3, 32, 32) in [-1, 1]: pixel / 127.5 - 1; other resolutions resized to 32 first (area average "
        "down, bilinear up)",
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "feature_dim": FEATURE_DIM,
        "training": {
            "steps": args.steps,
            "batch_size": batch_size,
            "optimizer": f"AdamW lr {args.lr} (one-cycle cosine, 10 % warm-up), weight_decay {args.weight_decay}",
            "augmentation": f"Gaussian pixel noise on half the images, std uniform in [0, {args.noise}]",
            "outlier_exposure": f"{args.outliers} noise images per step (uniform, smooth, sparse colour noise), "
            f"cross-entropy to uniform probabilities on every head, weight {args.outlier_weight}"
            if args.outliers else "none",
            "threads": args.threads,
            "seconds": round(seconds, 1),
        },
        "torch_version": torch.__version__,
        "numpy_version": np.__version__,
        "python_version": platform.python_version(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d"),
    }
    return model, info


def main(argv=None) -> dict:
    from safetensors.torch import save_file

    args = parse_args(argv)
    model, info = train(args)
    for split, accuracy in info["accuracy"].items():
        print(f"held-out {split} accuracy (32x32): " + ", ".join(f"{k} {v:.4f}" for k, v in accuracy.items()))
    for resolution, splits in info["accuracy_other_resolutions"].items():
        for split, accuracy in splits.items():
            print(f"  {split} at {resolution}x{resolution}: " + ", ".join(f"{k} {v:.4f}" for k, v in accuracy.items()))
    low = [f"{split} {a} {acc[a]:.4f}" for split, acc in info["accuracy"].items() for a in ACCURACY_ATTRIBUTES
           if acc[a] < args.min_accuracy]
    if low:
        raise SystemExit(f"accuracy below --min_accuracy {args.min_accuracy} ({', '.join(low)}): not written")
    state = {name: tensor.detach().contiguous() for name, tensor in model.state_dict().items()}
    save_file(state, str(args.weights), metadata={"format": "pt", "test_accuracy_all": f"{info['accuracy']['test']['all']:.6f}"})
    info["weights_sha256"] = weights_sha256(args.weights)
    info["weights_bytes"] = args.weights.stat().st_size
    args.sidecar.write_text(json.dumps(info, indent=2) + "\n")
    print(f"wrote {args.weights} ({info['weights_bytes']} bytes) and {args.sidecar}")
    return info


if __name__ == "__main__":
    main()

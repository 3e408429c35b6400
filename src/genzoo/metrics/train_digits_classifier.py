"""Train the digits classifier behind ``genzoo.metrics.digits`` (digits-FD, precision/recall, class coverage).

    python -m genzoo.metrics.train_digits_classifier            # writes digits_classifier.safetensors + .json here

Trains :class:`~genzoo.metrics.digits.DigitsClassifier` on the **train** split of scikit-learn's digits only (1437
images; the 360 test digits are the metrics' held-out reference and are never seen in training), seed 0, random
shifts of up to +-1 pixel (background-padded), AdamW with a one-cycle cosine learning rate, a fixed number of steps
(no early stopping, no model selection on the test split). Each step also shows it 32 noise images (uniform, smooth
and sparse pixel noise) with the target "uniform over the ten classes" -- outlier exposure (Hendrycks et al. 2019) --
so that noise, what an untrained generator makes, lands away from the digits in feature space instead of being
mapped confidently onto some class: without it uniform noise scored a precision of ~0.7. It then reports the accuracy
on the test split, refuses to write weights below ``--min_accuracy`` (97 %), and writes the weights (safetensors)
and a JSON sidecar (accuracy, seed, split sizes, architecture, hyperparameters, versions, date, sha256 of the
weights). Single-threaded on CPU by
default, about a minute; deterministic for a given torch build.
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

from .digits import FEATURE_DIM, SIDECAR_PATH, WEIGHTS_PATH, DigitsClassifier, weights_sha256


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--weight_decay", type=float, default=1e-2)
    parser.add_argument("--max_shift", type=int, default=1, help="random shifts of up to this many pixels")
    parser.add_argument("--outliers", type=int, default=32, help="noise images per step (outlier exposure), 0: none")
    parser.add_argument("--outlier_weight", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--min_accuracy", type=float, default=0.97, help="refuse to write weights below this")
    parser.add_argument("--weights", type=Path, default=WEIGHTS_PATH)
    parser.add_argument("--sidecar", type=Path, default=SIDECAR_PATH)
    return parser.parse_args(argv)


def split_tensors(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    from ..data.builtin import digits_arrays

    pixels, labels = digits_arrays(split)
    return torch.from_numpy(pixels.astype(np.float32) / 127.5 - 1)[:, None], torch.from_numpy(labels)


def random_shift(x: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Shift each image by (dy, dx) in -max_shift..max_shift, filling with the background (-1)."""
    if max_shift == 0:
        return x
    n, _, h, w = x.shape
    padded = F.pad(x, (max_shift,) * 4, value=-1.0)
    offsets = torch.randint(0, 2 * max_shift + 1, (n, 2), generator=generator)
    return torch.stack([padded[i, :, dy : dy + h, dx : dx + w] for i, (dy, dx) in enumerate(offsets.tolist())])


def outlier_images(n: int, generator: torch.Generator) -> torch.Tensor:
    """n non-digit images in [-1, 1]: a third uniform pixel noise, a third smooth noise (2x2, 3x3 or 4x4 uniform noise
    upsampled bilinearly to 8x8), a third sparse noise (background with each pixel lit at random with p 0.3)."""
    kinds = torch.arange(n) % 3
    uniform = torch.rand(n, 1, 8, 8, generator=generator) * 2 - 1
    sizes = torch.randint(2, 5, (n,), generator=generator).tolist()
    smooth = torch.cat([
        F.interpolate(torch.rand(1, 1, s, s, generator=generator) * 2 - 1, size=8, mode="bilinear", align_corners=False)
        for s in sizes
    ])
    lit = torch.rand(n, 1, 8, 8, generator=generator) < 0.3
    sparse = torch.where(lit, torch.rand(n, 1, 8, 8, generator=generator) * 2 - 1, torch.full_like(uniform, -1.0))
    kinds = kinds[:, None, None, None]
    return torch.where(kinds == 0, uniform, torch.where(kinds == 1, smooth, sparse))


@torch.no_grad()
def accuracy(model: DigitsClassifier, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    return float((model(x).argmax(1) == y).double().mean())


def train(args: argparse.Namespace) -> tuple[DigitsClassifier, dict]:
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


def _train(args: argparse.Namespace) -> tuple[DigitsClassifier, dict]:
    generator = torch.Generator().manual_seed(args.seed)
    x_train, y_train = split_tensors("train")
    x_test, y_test = split_tensors("test")
    model = DigitsClassifier()
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=args.lr, total_steps=args.steps, pct_start=0.1)
    start, order, position = time.perf_counter(), torch.randperm(len(x_train), generator=generator), 0
    model.train()
    for step in range(args.steps):
        if position + args.batch_size > len(order):  # a new epoch: reshuffle, drop the last partial batch
            order, position = torch.randperm(len(x_train), generator=generator), 0
        batch = order[position : position + args.batch_size]
        position += args.batch_size
        loss = F.cross_entropy(model(random_shift(x_train[batch], args.max_shift, generator)), y_train[batch])
        if args.outliers:  # outlier exposure (Hendrycks et al. 2019): noise gets uniform class probabilities
            log_p = F.log_softmax(model(outlier_images(args.outliers, generator)), dim=1)
            loss = loss - args.outlier_weight * log_p.mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        if (step + 1) % 500 == 0 or step + 1 == args.steps:
            print(f"step {step + 1}/{args.steps}  loss {loss.item():.4f}  ({time.perf_counter() - start:.0f} s)")
    model.eval()
    info = {
        "test_accuracy": accuracy(model, x_test, y_test),
        "train_accuracy": accuracy(model, x_train, y_train),
        "test_errors": int((model(x_test).argmax(1) != y_test).sum()),
        "seed": args.seed,
        "train_size": len(x_train),
        "test_size": len(x_test),
        "split": "sklearn train_test_split(arange(1797), test_size=360, stratify=labels, random_state=0); "
        "trained on train only",
        "architecture": "conv1 1->32 3x3 pad1 ReLU; conv2 32->64 3x3 pad1 ReLU; maxpool2 (4x4); conv3 64->64 3x3 "
        f"(2x2) ReLU; flatten 256; fc1 256->{FEATURE_DIM} (features: these pre-activations); ReLU; dropout 0.2; "
        f"fc2 {FEATURE_DIM}->10",
        "input": "(B, 1, 8, 8) in [-1, 1]: pixel / 127.5 - 1, pixel = round(v * 255 / 16)",
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "feature_dim": FEATURE_DIM,
        "training": {
            "steps": args.steps,
            "batch_size": args.batch_size,
            "optimizer": f"AdamW lr {args.lr} (one-cycle cosine, 10 % warm-up), weight_decay {args.weight_decay}",
            "augmentation": f"random shifts of up to {args.max_shift} pixel(s), background fill",
            "outlier_exposure": f"{args.outliers} noise images per step (uniform, smooth, sparse), cross-entropy to "
            f"uniform class probabilities, weight {args.outlier_weight}" if args.outliers else "none",
            "threads": args.threads,
            "seconds": round(time.perf_counter() - start, 1),
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
    print(f"held-out test accuracy {info['test_accuracy']:.4f} ({info['test_errors']} errors of {info['test_size']}), "
          f"train accuracy {info['train_accuracy']:.4f}")
    if info["test_accuracy"] < args.min_accuracy:
        raise SystemExit(f"test accuracy {info['test_accuracy']:.4f} < --min_accuracy {args.min_accuracy}: not written")
    state = {name: tensor.detach().contiguous() for name, tensor in model.state_dict().items()}
    save_file(state, str(args.weights), metadata={"format": "pt", "test_accuracy": f"{info['test_accuracy']:.6f}"})
    info["weights_sha256"] = weights_sha256(args.weights)
    info["weights_bytes"] = args.weights.stat().st_size
    args.sidecar.write_text(json.dumps(info, indent=2) + "\n")
    print(f"wrote {args.weights} ({info['weights_bytes']} bytes) and {args.sidecar}")
    return info


if __name__ == "__main__":
    main()

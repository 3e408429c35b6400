"""Pictures of samples: image grids and scatter plots, for the CLI and for the trainer's sample grids."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import PIL.Image


def grid_shape(n: int) -> tuple[int, int]:
    """``(rows, cols)`` for ``n`` images, close to square: an exact ``rows * cols == n`` at most twice as wide as
    tall when there is one (16 -> 4x4, 8 -> 2x4, 18 -> 3x6), else ``ceil(sqrt(n))`` columns and the last row
    padded with blank tiles (7 -> 3x3, 10 -> 3x4)."""
    side = math.ceil(math.sqrt(n))
    for cols in range(side, 2 * side + 1):
        rows = n // cols
        if n % cols == 0 and cols <= 2 * rows:
            return rows, cols
    return math.ceil(n / side), side


#: Small images (8x8 digits) are enlarged, pixel for pixel, to at least this many pixels a side in a grid.
MIN_TILE_SIZE = 64
#: Pixels of mid-grey between tiles (and around the grid), so dark-background images do not run into each other.
GRID_GAP = 4


def image_grid(images, rows: int, cols: int) -> np.ndarray:
    """``(N, H, W, C)`` images in [0, 1] -> one ``uint8`` grid of ``rows x cols`` tiles separated by ``GRID_GAP`` grey
    pixels, empty tiles black; tiles smaller than ``MIN_TILE_SIZE`` are enlarged by a whole factor with
    nearest-neighbour, so every pixel stays visible. Shape ``(height, width)`` for one channel, else
    ``(height, width, C)``."""
    pixels = (np.asarray(images, dtype=np.float32).clip(0, 1) * 255).round().astype(np.uint8)
    n, height, width, channels = pixels.shape
    factor = max(1, MIN_TILE_SIZE // max(height, width))
    pixels = pixels.repeat(factor, axis=1).repeat(factor, axis=2)
    tile_h, tile_w, gap = height * factor, width * factor, GRID_GAP
    canvas = np.full((gap + rows * (tile_h + gap), gap + cols * (tile_w + gap), channels), 128, dtype=np.uint8)
    for i in range(rows * cols):
        r, c = divmod(i, cols)
        top, left = gap + r * (tile_h + gap), gap + c * (tile_w + gap)
        canvas[top : top + tile_h, left : left + tile_w] = pixels[i] if i < n else 0
    return canvas[..., 0] if channels == 1 else canvas


def save_image_grid(images, rows: int, cols: int, out: Path) -> None:
    """:func:`image_grid` written to a PNG."""
    PIL.Image.fromarray(image_grid(images, rows, cols)).save(out)


def scatter_figure(samples, title: str, background=None):
    """``(N, D)`` vectors -> a matplotlib ``Figure``: a scatter plot of the first two dimensions (a histogram when
    ``D == 1``); ``background``, points of the data, is drawn under it as a grey 2-D histogram (its density)."""
    try:
        from matplotlib.figure import Figure  # no pyplot: no global backend or figure state is touched
    except ImportError:
        raise ImportError(
            "Scatter plots of vector samples need matplotlib: `pip install matplotlib`, or write --out *.npy."
        ) from None
    fig = Figure(figsize=(5, 5), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    if samples.shape[1] >= 2:
        if background is not None:
            ax.hist2d(background[:, 0], background[:, 1], bins=120, cmap="Greys", cmin=1)
        ax.scatter(samples[:, 0], samples[:, 1], s=6, alpha=0.7)
        ax.set_aspect("equal", adjustable="datalim")
        ax.set_xlabel("x[0]")
        ax.set_ylabel("x[1]")
    else:
        ax.hist(samples[:, 0], bins="auto")
        ax.set_xlabel("x[0]")
    ax.set_title(title)
    return fig


def save_scatter_plot(samples, out: Path, title: str) -> None:
    """:func:`scatter_figure` written to a PNG."""
    scatter_figure(samples, title).savefig(out)


def save_samples(samples: np.ndarray, path: Path, title: str = "") -> str:
    """Images ``(N, H, W, C)`` in [0, 1] as a grid, vectors ``(N, D)`` as a scatter plot; returns a description."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if samples.ndim == 4:
        rows, cols = grid_shape(len(samples))
        save_image_grid(samples, rows, cols, path)
        return f"a {rows}x{cols} grid of {len(samples)} images"
    save_scatter_plot(samples, path, title=title)
    return f"a scatter plot of {len(samples)} samples"

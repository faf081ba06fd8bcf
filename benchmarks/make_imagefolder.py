"""Write a synthetic image folder (class subfolders of PNG files) for the streaming benchmark.

    python benchmarks/make_imagefolder.py /tmp/amint-stream --n 24000 --size 128
    python benchmarks/make_imagefolder.py /tmp/amint-stream --n 24000 --size 128 --seed 1 --offset 24000

Each image is a smooth random colour field (a 16x16 grid, enlarged) with a bright square whose corner
says the class: learnable, unique per file, and compressible, so the PNGs stay small on disk while
the decoded dataset (n x 3 x size x size bytes) is large. Do not commit the images.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ("top-left", "top-right", "bottom-left", "bottom-right")


def make_image(rng: np.random.Generator, label: int, size: int) -> Image.Image:
    grid = rng.integers(0, 160, (16, 16, 3), dtype=np.uint8)
    image = np.asarray(Image.fromarray(grid).resize((size, size), Image.BILINEAR)).copy()
    half, (row, col) = size // 2, divmod(label, 2)
    image[row * half : row * half + half // 2, col * half : col * half + half // 2] += 90
    return Image.fromarray(image)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--n", type=int, default=24000, help="number of PNG files (default: 24000)")
    parser.add_argument("--size", type=int, default=128, help="side in pixels (default: 128)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--offset", type=int, default=0, help="first file number (to add files to a folder)")
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    for name in CLASSES:
        (args.folder / name).mkdir(parents=True, exist_ok=True)
    for i in range(args.offset, args.offset + args.n):
        label = i % len(CLASSES)
        make_image(rng, label, args.size).save(args.folder / CLASSES[label] / f"{i:06d}.png")
    files = list(args.folder.rglob("*.png"))
    on_disk, decoded = sum(p.stat().st_size for p in files), len(files) * 3 * args.size * args.size
    print(f"{len(files)} files in {args.folder}: {on_disk / 2**20:.0f} MiB on disk, {decoded / 2**20:.0f} MiB decoded")


if __name__ == "__main__":
    main()

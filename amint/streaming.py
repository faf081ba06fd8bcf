"""Image folders larger than memory: files decoded when taken, by DataLoader workers during training.

The resident path (amint/imagefolder.py) decodes every file once into one uint8 tensor that then
lives on the device. When that tensor would not fit (``choose_data_path`` decides by its size), the
benchmark instead holds ``StreamedImages``: the file list, indexed like the tensor (``images[idx]`` is
a lazy view, ``.to(device)`` decodes it). Training takes each step's batch from a DataLoader whose
workers decode into pinned memory; the split, the batches and the augmentations are the resident
path's, and both paths decode with the same function (``imagefolder.decode_image``).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Iterable, Iterator

import torch
from torch.utils.data import DataLoader, Dataset

from .data import IMAGEFOLDER_DEFAULT_SIZE, Benchmark
from .imagefolder import decode_image, is_gray, list_imagefolder

# Stream when the decoded dataset would take more than this share of the free memory: loading a folder
# resident peaks at about 4.4 times its decoded size (arrays, stacked, made contiguous: 9.9 GB for
# 2.2 GB measured, benchmarks/README.md), and training needs room beside it.
RESIDENT_SHARE = 0.125
STATS_SAMPLE = 2000  # images the streamed path's normalisation (mean, std) is measured on


class StreamedImages:
    """A read-only stand-in for a uint8 (N, C, H, W) tensor of image files, decoded when taken."""

    dtype = torch.uint8
    ndim = 4

    def __init__(self, files: list[str], size: int, channels: int):
        self.files, self.size, self.channels = files, size, channels

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self.files), self.channels, self.size, self.size))

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, key) -> "StreamedImages":
        """A lazy view: a slice, or an index tensor / list, as tensor indexing takes them."""
        if isinstance(key, slice):
            files = self.files[key]
        else:
            idx = key.tolist() if isinstance(key, torch.Tensor) else list(key)
            files = [self.files[i] for i in idx]
        return StreamedImages(files, self.size, self.channels)

    def decode(self, i: int) -> torch.Tensor:
        a = decode_image(Path(self.files[i]), self.size, rgb=self.channels == 3)
        return torch.from_numpy(a.reshape(self.size, self.size, -1).copy()).permute(2, 0, 1)

    def materialize(self) -> torch.Tensor:
        out = torch.empty(tuple(self.shape), dtype=torch.uint8)
        for i in range(len(self)):
            out[i] = self.decode(i)
        return out

    def to(self, device, non_blocking: bool = False) -> torch.Tensor:
        return self.materialize().to(device, non_blocking=non_blocking)


class _Decoded(Dataset):
    def __init__(self, images: StreamedImages):
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.images.decode(i)


def take(images: torch.Tensor | StreamedImages, idx: torch.Tensor | slice | None = None) -> torch.Tensor:
    """``images[idx]`` as a tensor, whichever path holds the images."""
    part = images if idx is None else images[idx]
    return part.materialize() if isinstance(part, StreamedImages) else part


def batches(images: torch.Tensor | StreamedImages, steps: list[torch.Tensor], workers: int,
            pin: bool) -> Iterable[torch.Tensor]:
    """Each step's images in order: resident = an index on the device; streamed = a DataLoader whose
    workers decode the step's files (pinned for a fast copy to the GPU) while the previous step runs."""
    if isinstance(images, torch.Tensor):
        return (images[idx] for idx in steps)
    workers = min(workers, len(os.sched_getaffinity(0)))  # more workers than cores only fight
    return DataLoader(_Decoded(images), batch_sampler=[idx.tolist() for idx in steps], num_workers=workers,
                      pin_memory=pin, prefetch_factor=4 if workers else None)


def chunks(images: torch.Tensor | StreamedImages, idx: torch.Tensor, size: int) -> Iterator[torch.Tensor]:
    """images[idx] a chunk at a time, as tensors."""
    for start in range(0, len(idx), size):
        yield take(images, idx[start:start + size])


# --- which path ----------------------------------------------------------------------------------


def free_memory_bytes(device: torch.device) -> int:
    """What the resident path may fill: available RAM, and the free GPU memory when training on CUDA."""
    ram = _available_ram()
    if device.type == "cuda":
        return min(ram, torch.cuda.mem_get_info(device)[0])
    return ram


def _available_ram() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def choose_data_path(dataset: str, stream: str, image_size: int | None, device: torch.device) -> tuple[bool, str]:
    """(stream?, why) for ``dataset``: only image folders stream; the registry's benchmarks are small."""
    if not dataset.startswith("imagefolder:"):
        return False, f"resident: {dataset} is loaded whole"
    if stream == "off":
        return False, "resident: streaming is off (--stream off)"
    _, train, test = list_imagefolder(Path(dataset.split(":", 1)[1]).expanduser())
    size = image_size or IMAGEFOLDER_DEFAULT_SIZE
    need = (len(train) + len(test)) * 3 * size * size  # as RGB: an upper bound
    free = free_memory_bytes(device)
    numbers = f"{len(train) + len(test):,} files decode to up to {need / 2**30:.2f} GiB at {size} px; " \
              f"{free / 2**30:.1f} GiB free"
    if stream == "on":
        return True, f"streamed (--stream on): {numbers}"
    if need > RESIDENT_SHARE * free:
        return True, f"streamed: {numbers}, more than {RESIDENT_SHARE:.0%} of it"
    return False, f"resident: {numbers}"


def load_imagefolder_streamed(folder: Path, size: int | None = None, seed: int = 0) -> Benchmark:
    """An image folder as a Benchmark of StreamedImages: files listed and their headers read, nothing decoded
    but a sample for the normalisation."""
    size = size or IMAGEFOLDER_DEFAULT_SIZE
    folder = folder.expanduser().resolve()
    class_names, train, test = list_imagefolder(folder)
    train, test = _readable(train, folder), _readable(test, folder)
    rgb = any(not gray for _, _, gray in train + test)  # one colour image makes the whole benchmark RGB
    if not train or not test:
        raise ValueError(f"{folder}: no readable images in the {'train' if not train else 'test'} split")
    c = 3 if rgb else 1
    xtr = StreamedImages([str(p) for p, _, _ in train], size, c)
    xte = StreamedImages([str(p) for p, _, _ in test], size, c)
    g = torch.Generator().manual_seed(seed)
    mean, std = _sample_stats(xtr, torch.randperm(len(xtr), generator=g)[:STATS_SAMPLE].sort().values)
    labels = lambda files: torch.tensor([label for _, label, _ in files], dtype=torch.int64)  # noqa: E731
    return Benchmark(f"imagefolder:{folder}", xtr, labels(train), xte, labels(test), class_names, mean, std)


def _sample_stats(images: StreamedImages, sample: torch.Tensor, chunk: int = 64) -> tuple[tuple, tuple]:
    """Per-channel mean and std (pixel units in [0, 1]) of the sampled images, decoded a few at a time."""
    c = images.channels
    total, total_sq, n = torch.zeros(c, dtype=torch.float64), torch.zeros(c, dtype=torch.float64), 0
    for part in chunks(images, sample, chunk):
        x = part.to(torch.float64) / 255.0
        total += x.sum(dim=(0, 2, 3))
        total_sq += (x * x).sum(dim=(0, 2, 3))
        n += x.shape[0] * x.shape[2] * x.shape[3]
    mean = total / n
    std = (total_sq / n - mean * mean).clamp_min(0).sqrt()
    return tuple(mean.tolist()), tuple(std.tolist())


def _readable(files: list[tuple[Path, int]], folder: Path) -> list[tuple[Path, int, bool]]:
    """(file, label, grayscale?) for each file whose header PIL reads; the rest skipped with a warning."""
    from PIL import Image

    out, bad = [], []
    for path, label in files:
        try:
            with Image.open(path) as im:  # reads the header only
                out.append((path, label, is_gray(im.mode)))
        except Exception as err:  # PIL raises many types for a broken file
            bad.append(f"{path} ({type(err).__name__})")
    if bad:
        warnings.warn(f"skipped {len(bad)} unreadable image(s) in {folder}: {'; '.join(bad[:5])}"
                      + (" ..." if len(bad) > 5 else ""), stacklevel=3)
    return out


"""Benchmarks: whole datasets as uint8 tensors (membership splits live in amint/splits.py).

A Benchmark is a whole dataset held as uint8 NCHW tensors on the CPU (they are small enough to move
to the device in one go). A MembershipSplit is a set of index tensors into it: members D, external
pool E, calibration sets and held-out non-members, regenerated exactly from a seed and sizes.
"""

from __future__ import annotations

import functools
import gzip
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

# Re-exported: the names live in amint.catalog, which imports without torch (the app lists them early).
from .catalog import IMAGE_EXTENSIONS, NAMED_BENCHMARKS, TORCHVISION_BENCHMARKS, available_benchmarks  # noqa: F401

FASHION_MNIST_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)
FASHION_MNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]
SYSTEM_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
IMAGEFOLDER_DEFAULT_SIZE = 64
IMAGEFOLDER_SPLIT_SEED = 0  # fixed so a folder without train/test always splits the same way


# ---------------------------------------------------------------------------------------------------
# Benchmark


@dataclass
class Benchmark:
    """A dataset as uint8 NCHW tensors. Treat the tensors as read-only: loads are cached and shared."""

    name: str
    train_images: torch.Tensor  # uint8, (N, C, H, W), on CPU
    train_labels: torch.Tensor  # int64, (N,)
    test_images: torch.Tensor  # uint8, (M, C, H, W): official test split, the held-out non-members
    test_labels: torch.Tensor  # int64, (M,)
    class_names: list[str]
    mean: tuple[float, ...]  # per channel, in [0, 1] pixel units, from train_images
    std: tuple[float, ...]

    def __post_init__(self) -> None:
        for images, labels in ((self.train_images, self.train_labels), (self.test_images, self.test_labels)):
            assert images.dtype == torch.uint8 and images.ndim == 4, (images.dtype, images.shape)
            assert labels.dtype == torch.int64 and labels.shape == (len(images),), labels.shape
        assert self.train_images.shape[1:] == self.test_images.shape[1:]
        assert len(self.mean) == len(self.std) == self.channels

    @property
    def channels(self) -> int:
        return self.train_images.shape[1]

    @property
    def image_size(self) -> int:
        h, w = self.train_images.shape[2:]
        assert h == w, f"non-square images {h}x{w}"
        return h


def load_benchmark(name: str, root: str | Path | None = None, image_size: int | None = None) -> Benchmark:
    """Load a benchmark by name (see available_benchmarks), cached per (name, root, image_size).

    root: directory holding the data; defaults to $AMINT_DATA_DIR, else ~/.cache/amint/data (and, for
    Fashion-MNIST, /usr/share/datasets/fashion-mnist/). image_size: resize to this square size.
    """
    name = _canonical_name(name)
    if image_size is not None and (not isinstance(image_size, int) or image_size < 1):
        raise ValueError(f"image_size must be a positive integer or None, got {image_size!r}")
    if name.startswith("imagefolder:"):
        folder = str(Path(name.split(":", 1)[1]).expanduser().resolve())
        return _load_cached("imagefolder:" + folder, None, "", image_size)
    root_key = None if root is None else str(Path(root).expanduser().resolve())
    return _load_cached(name, root_key, str(_data_dir(root)), image_size)


def _canonical_name(name: str) -> str:
    if name.startswith("imagefolder:"):
        if not name.split(":", 1)[1]:
            raise ValueError("imagefolder needs a path: 'imagefolder:/path/to/folder'")
        return name
    key = name.strip().lower()
    if key not in NAMED_BENCHMARKS:
        raise ValueError(f"unknown benchmark {name!r}; available: {', '.join(available_benchmarks())}")
    return key


def _data_dir(root: str | Path | None) -> Path:
    if root is not None:
        return Path(root).expanduser()
    return Path(os.environ.get("AMINT_DATA_DIR") or "~/.cache/amint/data").expanduser()


# data_dir is part of the key so that changing $AMINT_DATA_DIR is not answered from the cache.
@functools.lru_cache(maxsize=4)
def _load_cached(name: str, root: str | None, data_dir: str, image_size: int | None) -> Benchmark:
    if name.startswith("imagefolder:"):
        from .imagefolder import load_imagefolder

        return load_imagefolder(Path(name.split(":", 1)[1]), image_size or IMAGEFOLDER_DEFAULT_SIZE)
    if name == "fashion-mnist":
        splits, classes = _load_fashion_mnist(root, Path(data_dir)), FASHION_MNIST_CLASSES
    else:
        splits, classes = _load_torchvision(name, Path(data_dir), image_size)
    (xtr, ytr), (xte, yte) = splits
    if image_size is not None:
        xtr, xte = _resize(xtr, image_size), _resize(xte, image_size)
    return _make_benchmark(name, xtr, ytr, xte, yte, list(classes))


def _make_benchmark(name: str, xtr: torch.Tensor, ytr: torch.Tensor, xte: torch.Tensor,
                    yte: torch.Tensor, class_names: list[str]) -> Benchmark:
    mean, std = _channel_stats(xtr)
    return Benchmark(name, xtr.contiguous(), ytr.long(), xte.contiguous(), yte.long(), class_names, mean, std)


def _channel_stats(images: torch.Tensor, chunk: int = 4096) -> tuple[tuple[float, ...], tuple[float, ...]]:
    # Chunked float64 sums: a float copy of all of CIFAR would be hundreds of MB.
    c = images.shape[1]
    total, total_sq = torch.zeros(c, dtype=torch.float64), torch.zeros(c, dtype=torch.float64)
    for start in range(0, len(images), chunk):
        x = images[start:start + chunk].to(torch.float64) / 255.0
        total += x.sum(dim=(0, 2, 3))
        total_sq += (x * x).sum(dim=(0, 2, 3))
    n = images.shape[0] * images.shape[2] * images.shape[3]
    mean = total / n
    std = (total_sq / n - mean * mean).clamp_min(0).sqrt()
    return tuple(mean.tolist()), tuple(std.tolist())


def _resize(images: torch.Tensor, size: int, chunk: int = 8192) -> torch.Tensor:
    if images.shape[2] == images.shape[3] == size:
        return images
    parts = [
        F.interpolate(images[s:s + chunk].float(), size=(size, size), mode="bilinear",
                      antialias=True, align_corners=False).round().clamp(0, 255).to(torch.uint8)
        for s in range(0, len(images), chunk)
    ]
    return torch.cat(parts) if parts else images.new_zeros((0, images.shape[1], size, size))


# ---------------------------------------------------------------------------------------------------
# Fashion-MNIST from local idx files

_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | Path) -> np.ndarray:
    """Read an idx file (the MNIST format), gzipped if the name ends in .gz.

    Raises ValueError naming the file when it is truncated or not an idx file.
    """
    path = Path(path)
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as err:
        if isinstance(err, FileNotFoundError):
            raise
        raise ValueError(f"corrupt idx file {path}: {err}") from err
    # Magic: two zero bytes, a dtype code, the number of dimensions; then one big-endian int32 per dim.
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES or raw[3] == 0:
        raise ValueError(f"corrupt idx file {path}: bad magic number {raw[:4].hex() or '(empty)'}")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"corrupt idx file {path}: header truncated")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">i4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = header + int(np.prod(shape)) * dtype.itemsize
    if len(raw) != expected:
        raise ValueError(f"corrupt idx file {path}: {len(raw)} bytes, shape {shape} needs {expected}")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def _fashion_mnist_dirs(root: str | None, data_dir: Path) -> list[Path]:
    # An explicit root is the only place looked at, so a caller can be sure which copy is used.
    base = [Path(root), Path(root) / "fashion-mnist"] if root is not None else [data_dir / "fashion-mnist"]
    base.append(data_dir / "FashionMNIST" / "raw")  # where the torchvision fallback downloads to
    if root is None:
        base.append(SYSTEM_FASHION_MNIST_DIR)
    return base


def _find_idx(directory: Path, gz_name: str) -> Path | None:
    for candidate in (directory / gz_name, directory / gz_name.removesuffix(".gz")):
        if candidate.is_file():
            return candidate
    return None


def _load_fashion_mnist(root: str | None, data_dir: Path) -> tuple:
    dirs = _fashion_mnist_dirs(root, data_dir)
    for directory in dirs:
        files = [_find_idx(directory, f) for f in FASHION_MNIST_FILES]
        if all(files):
            return _read_idx_splits(files)
    return _download_fashion_mnist(data_dir, dirs)


def _read_idx_splits(files: list[Path]) -> tuple:
    arrays = [read_idx(f) for f in files]
    for (images, labels), (fi, fl) in zip((arrays[:2], arrays[2:]), (files[:2], files[2:])):
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise ValueError(f"idx files disagree: {fi} has shape {images.shape}, {fl} has {labels.shape}")
    as_nchw = lambda a: torch.from_numpy(a.astype(np.uint8)).unsqueeze(1)  # noqa: E731
    as_labels = lambda a: torch.from_numpy(a.astype(np.int64))  # noqa: E731
    return (as_nchw(arrays[0]), as_labels(arrays[1])), (as_nchw(arrays[2]), as_labels(arrays[3]))


def _download_fashion_mnist(data_dir: Path, searched: list[Path]) -> tuple:
    try:
        import torchvision.datasets as tvd

        train = tvd.FashionMNIST(str(data_dir), train=True, download=True)
        test = tvd.FashionMNIST(str(data_dir), train=False, download=True)
    except Exception as err:  # no network, proxy, disk: all mean the same to the caller
        dirs = "\n  ".join(str(d) for d in searched)
        raise FileNotFoundError(
            f"Fashion-MNIST not found and the download failed ({type(err).__name__}: {err}).\n"
            f"Place these four files: {', '.join(FASHION_MNIST_FILES)}\n"
            f"in one of these directories:\n  {dirs}\n"
            f"or install them with `apt-get install dataset-fashion-mnist` "
            f"(puts them in {SYSTEM_FASHION_MNIST_DIR}/), or set AMINT_DATA_DIR."
        ) from err
    return (train.data.unsqueeze(1), train.targets), (test.data.unsqueeze(1), test.targets)


# ---------------------------------------------------------------------------------------------------
# torchvision benchmarks (need a download or files placed by hand)


def _load_torchvision(name: str, data_dir: Path, image_size: int | None) -> tuple:
    ctor_name, layout = TORCHVISION_BENCHMARKS[name]
    try:
        import torchvision.datasets as tvd

        ctor = getattr(tvd, ctor_name)
        if name in ("gtsrb", "svhn"):
            train, test = (ctor(str(data_dir), split=s, download=True) for s in ("train", "test"))
        else:
            train, test = (ctor(str(data_dir), train=t, download=True) for t in (True, False))
    except Exception as err:
        raise FileNotFoundError(
            f"{name} not found in {data_dir} and the download failed ({type(err).__name__}: {err}).\n"
            f"torchvision expects in {data_dir}: {layout}.\n"
            f"Place the files there, pass root=, or set AMINT_DATA_DIR to a directory that has them."
        ) from err
    if name == "gtsrb":  # images vary in size: resize each one while reading
        size = image_size or 32
        return (_gtsrb_split(train, size), _gtsrb_split(test, size)), [str(i) for i in range(43)]
    return (_tv_split(train), _tv_split(test)), list(getattr(train, "classes", [])) or _digits()


def _digits() -> list[str]:
    return [str(i) for i in range(10)]


def _tv_split(ds) -> tuple[torch.Tensor, torch.Tensor]:
    data = torch.as_tensor(np.asarray(ds.data))
    labels = torch.as_tensor(np.asarray(getattr(ds, "targets", getattr(ds, "labels", None))), dtype=torch.int64)
    if data.ndim == 3:  # MNIST: (N, H, W)
        data = data.unsqueeze(1)
    elif data.shape[-1] == 3:  # CIFAR: (N, H, W, C); SVHN is already (N, C, H, W)
        data = data.permute(0, 3, 1, 2)
    return data.to(torch.uint8).contiguous(), labels


def _gtsrb_split(ds, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    from PIL import Image

    images = []
    for path, _ in ds._samples:
        with Image.open(path) as im:
            images.append(np.asarray(im.convert("RGB").resize((size, size), Image.BILINEAR)))
    labels = torch.tensor([label for _, label in ds._samples], dtype=torch.int64)
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous(), labels


# ---------------------------------------------------------------------------------------------------
# Membership splits


def default_split_sizes(name: str, n_train: int) -> dict:
    """The paper's MNIST proportions scaled to the pool: 5/12 members, 1/12 calibration, rest external.

    For a 60k pool that is 25k members, 30k external and 5k calibration non-members.
    """
    _canonical_name(name)
    if n_train < 12:
        raise ValueError(f"{name}: {n_train} training images is too few to split; need at least 12")
    members, calibration = 5 * n_train // 12, n_train // 12
    return {"members": members, "external": n_train - members - calibration, "calibration": calibration}


# Re-exported: callers take benchmarks and splits from one module.
from .splits import MembershipSplit, make_split  # noqa: E402,F401

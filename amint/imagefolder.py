"""``imagefolder:PATH``: a folder of class subfolders (or train/ and test/ holding them) as a Benchmark."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from .data import IMAGE_EXTENSIONS, IMAGEFOLDER_SPLIT_SEED, Benchmark, _make_benchmark


_GRAY_MODES = {"1", "L", "LA", "I", "I;16", "F"}


def _class_dirs(folder: Path) -> list[Path]:
    return sorted((d for d in folder.iterdir() if d.is_dir() and not d.name.startswith(".")), key=lambda d: d.name)


def _image_files(class_dir: Path) -> list[Path]:
    return sorted(p for p in class_dir.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def load_imagefolder(folder: Path, size: int) -> Benchmark:
    class_names, train_files, test_files = list_imagefolder(folder)
    (xtr, ytr), (xte, yte) = _read_images([train_files, test_files], size, folder)
    if len(xtr) == 0 or len(xte) == 0:
        raise ValueError(
            f"{folder}: no readable images in the {'train' if len(xtr) == 0 else 'test'} split; "
            f"add images (the automatic 80/20 split needs at least 3 per class)"
        )
    return _make_benchmark(f"imagefolder:{folder}", xtr, ytr, xte, yte, class_names)


def list_imagefolder(folder: Path) -> tuple[list[str], list[tuple[Path, int]], list[tuple[Path, int]]]:
    """Class names, and the (file, label) pairs of the train and the test split (train/ and test/, or 80/20)."""
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder {folder} does not exist or is not a directory")
    train_dir = folder / "train"
    test_dir = next((d for d in (folder / "test", folder / "val") if d.is_dir()), None)
    if train_dir.is_dir() and test_dir is not None:
        class_names = [d.name for d in _class_dirs(train_dir)]
        _require_classes(train_dir, class_names)
        extra = sorted({d.name for d in _class_dirs(test_dir)} - set(class_names))
        if extra:
            raise ValueError(f"{test_dir} has classes missing from {train_dir}: {', '.join(extra)}")
        train_files = _labelled_files(train_dir, class_names)
        test_files = _labelled_files(test_dir, class_names)
    else:
        class_names = [d.name for d in _class_dirs(folder)]
        _require_classes(folder, class_names)
        train_files, test_files = _split_files(_labelled_files(folder, class_names))
    return class_names, train_files, test_files


def _require_classes(folder: Path, class_names: list[str]) -> None:
    if not class_names:
        raise ValueError(f"no class subfolders in {folder}; expected {folder}/<class name>/<image>.png")


def _labelled_files(folder: Path, class_names: list[str]) -> list[tuple[Path, int]]:
    return [(p, i) for i, c in enumerate(class_names) if (folder / c).is_dir() for p in _image_files(folder / c)]


def _split_files(files: list[tuple[Path, int]]) -> tuple[list, list]:
    # Stratified: each class keeps about 20% for test, so small classes still appear in both splits.
    g = torch.Generator().manual_seed(IMAGEFOLDER_SPLIT_SEED)
    train, test = [], []
    for label in sorted({lab for _, lab in files}):
        group = [f for f in files if f[1] == label]
        order = torch.randperm(len(group), generator=g).tolist()
        n_test = round(0.2 * len(group))
        test += [group[i] for i in order[:n_test]]
        train += [group[i] for i in order[n_test:]]
    return train, test


def is_gray(mode: str) -> bool:
    return mode in _GRAY_MODES


def decode_image(path: Path, size: int, rgb: bool | None = None) -> np.ndarray:
    """One file as a (size, size) uint8 array, (size, size, 3) if colour or ``rgb``: the one decoder of
    both the resident and the streamed path, so that they see the same pixels."""
    from PIL import Image

    from .uploads import open_image  # size and pixel limits checked before decoding

    with open_image(path) as im:
        a = np.asarray(im.convert("L" if is_gray(im.mode) else "RGB").resize((size, size), Image.BILINEAR))
    return np.repeat(a[..., None], 3, axis=2) if rgb and a.ndim == 2 else a


def _read_images(splits: list[list[tuple[Path, int]]], size: int, folder: Path) -> list:
    decoded, bad = [], []
    for files in splits:
        arrays, labels = [], []
        for path, label in files:
            try:
                arrays.append(decode_image(path, size))
                labels.append(label)
            except Exception as err:  # PIL raises many types for a broken file
                bad.append(f"{path} ({type(err).__name__})")
        decoded.append((arrays, labels))
    if bad:
        warnings.warn(f"skipped {len(bad)} unreadable image(s) in {folder}: {'; '.join(bad[:5])}"
                      + (" ..." if len(bad) > 5 else ""), stacklevel=5)
    if not any(arrays for arrays, _ in decoded):
        raise ValueError(f"no readable images in {folder} (extensions: {', '.join(sorted(IMAGE_EXTENSIONS))})")
    # Grayscale only if every image is: one colour image makes the whole benchmark RGB.
    rgb = any(a.ndim == 3 for arrays, _ in decoded for a in arrays)
    return [(_stack(arrays, size, rgb), torch.tensor(labels, dtype=torch.int64)) for arrays, labels in decoded]


def _stack(arrays: list[np.ndarray], size: int, rgb: bool) -> torch.Tensor:
    c = 3 if rgb else 1
    if not arrays:
        return torch.zeros((0, c, size, size), dtype=torch.uint8)
    hwc = [np.repeat(a[..., None], c, axis=2) if a.ndim == 2 else a for a in arrays]
    return torch.from_numpy(np.stack(hwc)).permute(0, 3, 1, 2).contiguous()

"""The names amint knows, importable without torch: the app lists them before torch has loaded.

Benchmarks by name (and where torchvision expects their files), the file types read as images, and
the files of a pair folder. ``amint.data``, ``amint.uploads`` and ``amint.pair`` take them from here.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}

# torchvision-backed benchmarks: constructor name and where torchvision expects the files under root.
TORCHVISION_BENCHMARKS = {
    "mnist": ("MNIST", "MNIST/raw/ (train-images-idx3-ubyte, train-labels-idx1-ubyte, "
                       "t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte)"),
    "cifar10": ("CIFAR10", "cifar-10-batches-py/ (or cifar-10-python.tar.gz in the directory itself)"),
    "cifar100": ("CIFAR100", "cifar-100-python/ (or cifar-100-python.tar.gz in the directory itself)"),
    "gtsrb": ("GTSRB", "gtsrb/GTSRB/Training/, gtsrb/GTSRB/Final_Test/Images/ and "
                       "gtsrb/GT-final_test.csv (the unzipped GTSRB-Training_fixed.zip, "
                       "GTSRB_Final_Test_Images.zip and GTSRB_Final_Test_GT.zip)"),
    "svhn": ("SVHN", "train_32x32.mat and test_32x32.mat (needs scipy)"),
}
NAMED_BENCHMARKS = ("fashion-mnist", *TORCHVISION_BENCHMARKS)

# A pair folder (and Hub repo): its config, its weights, its model card.
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
CARD_NAME = "README.md"


def weights_sha256(folder: str | Path) -> str:
    """SHA-256 of a pair folder's weights file, read in 1 MB chunks: which weights were audited or measured."""
    digest = hashlib.sha256()
    with (Path(folder) / WEIGHTS_NAME).open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def available_benchmarks() -> list[str]:
    """Names accepted by amint.data.load_benchmark; PATH in the last one is a folder of class subfolders."""
    return [*NAMED_BENCHMARKS, "imagefolder:PATH"]

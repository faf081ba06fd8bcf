"""amint.streaming: an image folder decoded per batch trains the pair the resident path trains."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from amint import streaming
from amint.data import load_benchmark
from amint.train import TrainConfig, train_pair
from tests.conftest import TINY_BACKBONE, synthetic_benchmark


def write_tiny_folder(root: Path, n: int = 160) -> Path:
    """Class folders of 16 px grayscale PNGs (the synthetic benchmark's train images)."""
    bench = synthetic_benchmark(n_train=n, n_test=0)
    for i, (image, label) in enumerate(zip(bench.train_images, bench.train_labels)):
        (root / bench.class_names[label]).mkdir(exist_ok=True)
        Image.fromarray(image[0].numpy().astype(np.uint8)).save(root / bench.class_names[label] / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    return write_tiny_folder(tmp_path_factory.mktemp("folder"))


def tiny_folder_config(folder: Path, **overrides) -> TrainConfig:
    base = dict(dataset=f"imagefolder:{folder}", image_size=16, **TINY_BACKBONE,
                head={"trace": {"width": 8, "hidden": 16}, "memories": {}}, n_members=48, n_external=48,
                n_calibration=16, epochs=2, head_epochs=1, batch_size=16, optimizer="sgd", lr=0.05, augment=True,
                monitor_samples=16, device="cpu")
    return TrainConfig(**(base | overrides))


def test_streamed_images_decode_the_resident_pixels(tiny_folder):
    resident = load_benchmark(f"imagefolder:{tiny_folder}", image_size=16)
    streamed = streaming.load_imagefolder_streamed(tiny_folder, 16)
    assert streamed.train_images.shape == resident.train_images.shape
    assert torch.equal(streamed.train_labels, resident.train_labels)
    idx = torch.tensor([5, 0, 17])
    assert torch.equal(streaming.take(streamed.train_images, idx), resident.train_images[idx])
    assert torch.equal(streamed.test_images[2:4].to("cpu"), resident.test_images[2:4])
    assert streamed.mean == pytest.approx(resident.mean) and streamed.std == pytest.approx(resident.std)


def test_a_streamed_run_trains_the_resident_runs_pair(tiny_folder):
    # Same split, batches and augmentation; the streamed batches come from two DataLoader workers.
    resident = train_pair(tiny_folder_config(tiny_folder, stream="off"))
    streamed = train_pair(tiny_folder_config(tiny_folder, stream="on", data_workers=2))
    assert streamed.config.training["data"] == "streamed" and resident.config.training["data"] == "resident"
    a, b = resident.state_dict(), streamed.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resident.config.metrics["auc"] == streamed.config.metrics["auc"]


def test_the_path_is_chosen_by_size(tiny_folder, monkeypatch):
    cpu = torch.device("cpu")
    assert not streaming.choose_data_path(f"imagefolder:{tiny_folder}", "auto", 16, cpu)[0]
    assert not streaming.choose_data_path("fashion-mnist", "on", None, cpu)[0]  # only image folders stream
    decoded = 160 * 3 * 16 * 16
    monkeypatch.setattr(streaming, "free_memory_bytes", lambda device: int(decoded / streaming.RESIDENT_SHARE) + 1)
    assert not streaming.choose_data_path(f"imagefolder:{tiny_folder}", "auto", 16, cpu)[0]
    monkeypatch.setattr(streaming, "free_memory_bytes", lambda device: int(decoded / streaming.RESIDENT_SHARE) - 1)
    streamed, why = streaming.choose_data_path(f"imagefolder:{tiny_folder}", "auto", 16, cpu)
    assert streamed and why.startswith("streamed: 160 files")


def test_streamed_memory_whitening_matches_the_resident_one(tiny_folder):
    head = {"trace": None, "memories": {"exact": {"dims": 16, "tables": 4, "bits": 12, "buckets_log2": 10}}}
    pairs = [train_pair(tiny_folder_config(tiny_folder, stream=s, head=head, mode="passive", head_epochs=0))
             for s in ("off", "on")]
    (ra, rb), (sa, sb) = ((p.head.memories["exact"].center, p.head.memories["exact"].projection) for p in pairs)
    assert torch.allclose(ra, sa) and torch.allclose(rb.abs(), sb.abs(), atol=1e-8)  # eigenvectors: up to sign

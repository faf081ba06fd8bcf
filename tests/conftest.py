"""Shared fixtures: a tiny synthetic benchmark and a pair trained on it in seconds on CPU."""

from __future__ import annotations

import contextlib
import os
import tempfile

from tests.hubserver import reserve_port

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
# Every Hub call in the tests goes to the fake Hub (tests/hubserver.py) on a loopback port, through the variables
# huggingface_hub reads when it is imported: so they are set here, before anything imports it.
os.environ["HF_ENDPOINT"] = f"http://127.0.0.1:{reserve_port()}"
os.environ["HF_HOME"] = tempfile.mkdtemp(prefix="amint-tests-hf-home-")
for _key in ("HF_HUB_OFFLINE", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
    os.environ.pop(_key, None)

import pytest
import torch

from amint.data import Benchmark
from amint.train import TrainConfig, train_pair

# One thread: tiny convolutions gain nothing from more, a busy machine makes extra threads fight
# (about 8x slower on 2 shared cores), and the tiny pair's metrics depend on the thread count.
torch.set_num_threads(int(os.environ.get("AMINT_TEST_THREADS", "1")))

TINY_BACKBONE = {"backbone": "resnet18", "backbone_kwargs": {"channels": [8, 16, 16, 16]}}


def synthetic_benchmark(n_train: int = 600, n_test: int = 200, size: int = 16, seed: int = 0) -> Benchmark:
    """Noise images whose class is the brightness of one quadrant: learnable, and unique per sample."""
    g = torch.Generator().manual_seed(seed)

    def make(n):
        labels = torch.randint(0, 4, (n,), generator=g)
        x = torch.randint(0, 128, (n, 1, size, size), generator=g, dtype=torch.uint8)
        h = size // 2
        for c in range(4):
            r, k = divmod(c, 2)
            sel = labels == c
            x[sel, :, r * h : (r + 1) * h, k * h : (k + 1) * h] += 120
        return x, labels

    xtr, ytr = make(n_train)
    xte, yte = make(n_test)
    return Benchmark("synthetic", xtr, ytr, xte, yte, ["top-left", "top-right", "bottom-left", "bottom-right"],
                     mean=(0.3,), std=(0.25,))


# Small memories for 16 px images: a few tables of 2**12 buckets.
TINY_MEMORIES = {"exact": {"dims": 32, "tables": 8, "bits": 16, "buckets_log2": 12},
                 "aligned": {"border": 2, "dims": 24, "tables": 8, "bits": 16, "buckets_log2": 12, "shifts": 1,
                             "zooms": [14 / 16], "seed": 1}}
TINY_TRACE = {"width": 16, "hidden": 64}


def tiny_config(**overrides) -> TrainConfig:
    # The paper-style trace head alone and SGD: on 16 px noise it memorises 200 members in a few seconds.
    base = dict(dataset="synthetic", **TINY_BACKBONE, setup="entry", head={"trace": TINY_TRACE, "memories": {}},
                head_epochs=0, memory_views=1, optimizer="sgd", weight_decay=5e-4, head_lr_mult=1.0,
                n_members=200, n_external=200, n_calibration=100, epochs=8, batch_size=50, lr=0.05,
                target_fpr=None, monitor_samples=100, device="cpu")
    base.update(overrides)
    return TrainConfig(**base)


@pytest.fixture(scope="session")
def synthetic():
    return synthetic_benchmark()


@pytest.fixture(scope="session")
def tiny_pair(synthetic, tmp_path_factory):
    """A pair that has memorised its 200 members; saved to a folder, returned with that folder."""
    # 20 epochs, not tiny_config's 8: after 8 its trace read exact copies at AUC 0.73 on one CPU (0.92 after 20),
    # too close to chance for the tests that need members found, whatever the machine's float rounding.
    out = tmp_path_factory.mktemp("pair")
    pair = train_pair(tiny_config(epochs=20, out=str(out)), bench=synthetic)
    return pair, out


@pytest.fixture(scope="session")
def tiny_memory_pair(synthetic, tmp_path_factory):
    """The tiny recipe with both hashed memories beside the trace head, calibrated; saved, returned with its folder."""
    out = tmp_path_factory.mktemp("memory-pair")
    cfg = tiny_config(head={"trace": TINY_TRACE, "memories": TINY_MEMORIES}, epochs=3, head_epochs=1, out=str(out))
    return train_pair(cfg, bench=synthetic), out


@contextlib.contextmanager
def served_app():
    """The app as built from the current environment, launched on 127.0.0.1, and a gradio_client Client to it."""
    from gradio_client import Client

    from amint.ui import build_app

    demo = build_app()
    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True)
    try:
        yield Client(demo.local_url, verbose=False)
    finally:
        demo.close()


def with_trace_auc(pair, auc: float):
    """A copy of ``pair`` whose aMINT reading states this calibration AUC (nothing else changes)."""
    import copy

    other = copy.deepcopy(pair)
    readings = {name: dict(data) for name, data in other.config.readings.items()}
    readings["amint"]["cal_auc"] = auc
    other.set_readings(readings)
    return other

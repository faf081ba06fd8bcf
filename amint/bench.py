"""Verify latency and throughput on this machine: what ``python -m amint bench`` prints."""

from __future__ import annotations

import os
import platform
import statistics
import time
from datetime import datetime, timezone
from typing import Any, Callable

from .pair import AuditedPair, PairConfig


def _random_images(config: PairConfig, n: int, seed: int) -> list:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    shape = (config.image_size, config.image_size) + (() if config.in_chans == 1 else (3,))
    return [Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)) for _ in range(n)]


def _latency_ms(fn: Callable[[Any], Any], items: list) -> dict:
    times = []
    for item in items:
        t0 = time.perf_counter()
        fn(item)
        times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    return {"median": round(statistics.median(times), 3), "p90": round(times[int(0.9 * (len(times) - 1))], 3),
            "mean": round(statistics.fmean(times), 3)}


def run_bench(pair: AuditedPair, n: int = 200, batch_size: int = 256, seed: int = 0) -> dict:
    """Single-image verify latency (plain, and with activation maps + saliency) and batched throughput."""
    import torch

    from .verify import explain_image, verify_image, verify_images

    images = _random_images(pair.config, n, seed)

    def explained(im) -> None:  # what the Verify tab computes: verdict, maps and saliency
        explain_image(pair, im)

    for im in images[:3]:  # warm-up: first calls allocate and pick kernels
        explained(im)
    plain_ms = _latency_ms(lambda im: verify_image(pair, im), images)
    explained_ms = _latency_ms(explained, images)
    t0 = time.perf_counter()
    verify_images(pair, images, batch_size=batch_size)
    batch_s = time.perf_counter() - t0
    device = next(pair.parameters()).device
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "python": platform.python_version(),
            "torch": torch.__version__,
        },
        "pair": {"backbone": pair.config.backbone, "image_size": pair.config.image_size,
                 "in_chans": pair.config.in_chans, "dataset": pair.config.dataset},
        "n": n,
        "seed": seed,
        "single_verify_ms": plain_ms,
        "single_verify_with_explain_ms": explained_ms,
        "batch": {"batch_size": batch_size, "seconds": round(batch_s, 4), "images_per_second": round(n / batch_s, 1)},
    }

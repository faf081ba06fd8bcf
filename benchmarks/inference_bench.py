"""Inference on this machine for a pair: verdict latency p50/p95 with and without maps, throughput, peak memory.

    python benchmarks/inference_bench.py models/fashion-mnist-resnet18 --n 200 --n-explain 50 --batch-n 5000

Three single-image paths, each timed image by image on real test images (Fashion-MNIST's test split,
as PIL images, so decoding to the model input is included):

- verdict: ``verify_image`` (what the audit and the API return);
- verdict + maps: the pair's one forward and the activation maps of its taps (``forward_one`` + ``heat_maps``);
- verdict + maps + saliency: ``explain_image``, what the Verify tab shows.

Then ``verify_images`` over ``--batch-n`` images in batches of ``--batch-size`` (images/s), and the
process's peak resident memory (``ru_maxrss``) before and after the batch.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from amint import explain  # noqa: E402
from amint.data import load_benchmark  # noqa: E402
from amint.pair import AuditedPair  # noqa: E402
from amint.preprocess import preprocess  # noqa: E402
from amint.verify import explain_image, load_image, verify_image, verify_images  # noqa: E402


def percentiles(ms: list[float]) -> dict[str, float]:
    a = np.asarray(ms)
    return {"p50": round(float(np.percentile(a, 50)), 3), "p95": round(float(np.percentile(a, 95)), 3),
            "mean": round(float(a.mean()), 3), "n": len(ms)}


def time_each(fn, items: list, warmup: int = 3) -> dict[str, float]:
    """Wall-clock percentiles, and the same for this process's CPU time: on a shared machine the CPU
    time is what an idle core would take (one thread), the wall time what a user waits here."""
    for item in items[:warmup]:  # first calls allocate and pick kernels
        fn(item)
    ms, cpu_ms = [], []
    for item in items:
        t0, c0 = time.perf_counter(), time.process_time()
        fn(item)
        ms.append((time.perf_counter() - t0) * 1000)
        cpu_ms.append((time.process_time() - c0) * 1000)
    return percentiles(ms) | {f"cpu_{k}": v for k, v in percentiles(cpu_ms).items() if k != "n"}


def verdict_with_maps(pair: AuditedPair, image) -> list:
    x = preprocess(load_image(image), pair.config)
    out = explain.forward_one(pair, x)
    return explain.heat_maps(pair.config.taps, out.maps, tuple(x.shape[1:]))


def rss_mb(field: str = "VmRSS") -> float:
    """Resident memory now (VmRSS) or at its peak (VmHWM), from /proc on Linux; else the peak from getrusage."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # KiB on Linux


def test_images(pair: AuditedPair, n: int, data_root: str | None, random: bool = False) -> list[Image.Image]:
    """The first n images of the pair's benchmark test split (never trained on), as PIL images; or noise."""
    if random:
        shape = (n, pair.config.image_size, pair.config.image_size) + (() if pair.config.in_chans == 1 else (3,))
        return [Image.fromarray(a) for a in np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)]
    bench = load_benchmark(pair.config.dataset, data_root, image_size=pair.config.image_size)
    arr = bench.test_images[:n].permute(0, 2, 3, 1).numpy()
    return [Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a) for a in arr]


def run(args: argparse.Namespace) -> dict:
    if args.threads:
        torch.set_num_threads(args.threads)
    rss_start = rss_mb()
    pair = AuditedPair.from_pretrained(args.pair)
    rss_pair = rss_mb()
    images = test_images(pair, max(args.n, args.n_explain, args.batch_n), args.data_root, args.random_images)
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": "python benchmarks/inference_bench.py " + " ".join(sys.argv[1:]),
        "machine": f"{platform.machine()} {os.cpu_count()} cores, torch {torch.__version__}, "
                   f"{torch.get_num_threads()} threads, shared with other jobs (load average {os.getloadavg()[0]:.1f})",
        "pair": args.pair,
        "images": "uniform noise, seed 0" if args.random_images else f"{pair.config.dataset} test split, first images",
        "verdict_ms": time_each(lambda im: verify_image(pair, im), images[: args.n]),
        "verdict_with_maps_ms": time_each(lambda im: verdict_with_maps(pair, im), images[: args.n]),
        "verdict_maps_saliency_ms": time_each(lambda im: explain_image(pair, im), images[: args.n_explain]),
    }
    rss_single = rss_mb()
    t0, c0 = time.perf_counter(), time.process_time()
    verify_images(pair, images[: args.batch_n], batch_size=args.batch_size)
    seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - c0
    result["batch"] = {"images": args.batch_n, "batch_size": args.batch_size, "seconds": round(seconds, 3),
                       "images_per_second": round(args.batch_n / seconds, 1),
                       "images_per_cpu_second": round(args.batch_n / cpu_seconds, 1)}
    result["rss_mb"] = {"after_imports": rss_start, "pair_loaded": rss_pair, "after_single_verdicts": rss_single,
                        "after_batch": rss_mb(), "peak": rss_mb("VmHWM")}
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    return result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("pair", nargs="?", default=str(ROOT / "models" / "fashion-mnist-resnet18"))
    p.add_argument("--n", type=int, default=200, help="images for the verdict and verdict+maps latencies")
    p.add_argument("--n-explain", type=int, default=50, help="images for the verdict+maps+saliency latency")
    p.add_argument("--batch-n", type=int, default=5000)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--data-root", default=None)
    p.add_argument("--random-images", action="store_true", help="noise images instead of the test split")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--out", default=None)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    result = run(parse_args(argv))
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()

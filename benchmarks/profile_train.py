"""Where one epoch of our training loop spends its time: torch.profiler around ``train_pair``'s joint phase.

    python benchmarks/profile_train.py --members 1024 --threads 1 --out benchmarks/results/profile_train.json

The profiler starts when the loop reports its joint phase and stops after the first epoch (the
unchanged ``amint.train`` loop; the monitor is shrunk to 64 images). Each operator's self time goes
to one bucket: arithmetic (convolutions, matmuls, normalisation, activations, the optimizer's
update), data movement (indexing, copies, concatenation, layout changes, augmentation), and the
rest; what the operators do not account for is Python and dispatch overhead (on a GPU: launches).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402

from amint.data import Benchmark, load_benchmark  # noqa: E402
from amint.train import TrainConfig, train_pair  # noqa: E402

BACKBONE = {"backbone": "resnet18", "backbone_kwargs": {"channels": [16, 32, 64, 128], "stem_type": "deep",
                                                        "stem_width": 8}}
# Substrings of aten operator names, checked in this order.
BUCKETS = {
    "data movement": ("index", "gather", "copy", "_to_copy", "aten::to", "cat", "contiguous", "clone", "pad",
                      "randperm", "repeat", "stack", "expand", "view", "reshape", "permute", "empty_like",
                      "fill_", "zero_"),
    "arithmetic": ("conv", "mm", "addmm", "linear", "batch_norm", "relu", "threshold", "pool", "add", "mul",
                   "div", "sqrt", "lerp", "sum", "mean", "softmax", "cross_entropy", "nll", "binary", "sigmoid",
                   "adam", "foreach", "exp", "log", "sub", "neg"),
}


def bucket(name: str) -> str:
    low = name.lower()
    for key, parts in BUCKETS.items():
        if any(p in low for p in parts):
            return key
    return "other operators"


def profile_epoch(cfg: TrainConfig, bench: Benchmark | None) -> tuple[profile, float, int]:
    """Profile the first joint epoch; returns the profiler, the epoch's wall seconds and its steps."""
    prof = profile(activities=[ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else []))
    state = {"t0": 0.0, "wall": 0.0, "steps": 0}

    def callback(p) -> None:
        if p.kind == "phase" and p.phase == "joint":
            prof.start()
            state["t0"] = time.perf_counter()
        elif p.kind == "step" and p.phase == "joint" and p.epoch == 1:
            state["steps"] = p.step
        elif p.kind == "epoch" and p.phase == "joint" and p.epoch == 1:
            state["wall"] = time.perf_counter() - state["t0"]
            prof.stop()

    train_pair(cfg, callback=callback, bench=bench)
    return prof, state["wall"], state["steps"]


def summarise(prof: profile, wall: float, steps: int, top: int = 15) -> dict:
    events = [e for e in prof.key_averages() if e.key.startswith("aten::")]
    sums = {"data movement": 0.0, "arithmetic": 0.0, "other operators": 0.0}
    for e in events:
        sums[bucket(e.key)] += e.self_cpu_time_total / 1e6
    ops = sum(e.count for e in events)
    accounted = sum(sums.values())
    shares = {k: round(v / wall, 4) for k, v in sums.items()} | {"python and dispatch": round(1 - accounted / wall, 4)}
    ranked = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:top]
    return {
        "epoch_wall_seconds": round(wall, 3), "steps": steps,
        "aten_calls_per_step": round(ops / max(steps, 1), 1),
        "us_per_aten_call": round(accounted / max(ops, 1) * 1e6, 2),
        "share_of_wall": shares,
        "top_ops": [{"op": e.key, "bucket": bucket(e.key), "calls": e.count,
                     "self_seconds": round(e.self_cpu_time_total / 1e6, 4),
                     "share": round(e.self_cpu_time_total / 1e6 / wall, 4)} for e in ranked],
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--members", type=int, default=1024)
    p.add_argument("--calibration", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--train", default="{}", help="more TrainConfig fields as JSON")
    p.add_argument("--out", default=None)
    return p.parse_args(argv)


def main(argv: list[str] | None = None, bench: Benchmark | None = None) -> dict:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = TrainConfig(dataset=args.dataset, **BACKBONE, setup="middle", head={"trace": {}, "memories": {}},
                      mode="active", epochs=1, head_epochs=0, memory_views=0, n_members=args.members,
                      n_external=args.members, n_calibration=args.calibration, batch_size=args.batch_size,
                      monitor_samples=64, target_fpr=None, seed=0, **json.loads(args.train))
    prof, wall, steps = profile_epoch(cfg, bench)
    result = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "command": "python benchmarks/profile_train.py " + " ".join(sys.argv[1:]),
              "machine": f"{platform.machine()} {os.cpu_count()} cores, torch {torch.__version__}, "
                         f"{torch.get_num_threads()} threads, shared with other jobs (load average {os.getloadavg()[0]:.1f})",
              "settings": {"members": args.members, "batch_size": args.batch_size, "seed": 0, **BACKBONE,
                           "train": json.loads(args.train)},
              **summarise(prof, wall, steps)}
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "top_ops"}, indent=1))
    for row in result["top_ops"]:
        print(f"{row['op']:45s} {row['bucket']:16s} {row['calls']:6d} {row['self_seconds']:8.3f}s {row['share']:.1%}")
    return result


if __name__ == "__main__":
    main()

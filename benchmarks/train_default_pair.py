"""Train the default pair (models/fashion-mnist-resnet18) and its passive baseline on the same split.

    python benchmarks/train_default_pair.py            # both runs, about 25 min on a 2-core CPU
    python benchmarks/train_default_pair.py --only active

Writes the pairs and a JSON log per run under benchmarks/results/. The recipe is the measured one
(see benchmarks/README.md): a narrow ResNet-18 with a CIFAR-style deep stem, Entry taps, and a
Fourier-feature MINT head consolidated on the frozen backbone after joint training.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from amint.train import TrainConfig, train_pair  # noqa: E402

# Everything else is TrainConfig's defaults, which are this measured recipe.
RECIPE = dict(
    dataset="fashion-mnist",
    backbone="resnet18",
    backbone_kwargs={"channels": [16, 32, 64, 128], "stem_type": "deep", "stem_width": 8},
    head_frequency=20.0,
    seed=0,
)


def run(mode: str, out: Path) -> dict:
    cfg = TrainConfig(**RECIPE, mode=mode, out=str(out))
    t0 = time.time()

    def report(p):
        if p.kind == "epoch":
            m = p.metrics
            print(f"[{mode}] {p.phase} epoch {p.epoch}/{p.epochs}: task loss {m['task_loss']:.3f} "
                  f"test acc {m['test_accuracy']:.3f} cal MINT acc {m['cal_mint_accuracy']:.3f} "
                  f"cal AUC {m['cal_auc']:.3f} ({m['seconds']:.0f} s)", flush=True)

    pair = train_pair(cfg, callback=report)
    metrics = {k: v for k, v in pair.config.metrics.items() if k != "roc"}
    log = {"mode": mode, "config": asdict(cfg), "metrics": metrics, "wall_seconds": round(time.time() - t0, 1),
           "machine": f"{platform.machine()} {platform.processor()} {__import__('os').cpu_count()} cores",
           "date": time.strftime("%Y-%m-%d %H:%M"), "command": " ".join(sys.argv)}
    print(json.dumps(metrics, indent=1), flush=True)
    return log


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=["active", "passive"])
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = ap.parse_args()
    results = Path(args.out)
    results.mkdir(parents=True, exist_ok=True)
    targets = {"active": ROOT / "models" / "fashion-mnist-resnet18", "passive": results / "passive-pair"}
    for mode in ["active", "passive"]:
        if args.only and mode != args.only:
            continue
        log = run(mode, targets[mode])
        (results / f"default_pair_{mode}.json").write_text(json.dumps(log, indent=1) + "\n")


if __name__ == "__main__":
    main()

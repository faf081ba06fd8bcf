"""Branch a learning-rate cool-down off a constant-schedule run, at the epoch its checkpoint holds.

    python benchmarks/cooldown.py runs/tc25k/trace-25000-60/active/checkpoint --cooldown 6 \
        --runs runs/cooldown25k --out benchmarks/results/cooldown_25k.json

A constant learning rate keeps one run's checkpoints comparable (its epochs axis) but leaves the weights
where the noise of full-rate steps puts them; a short linear decay to 0 usually buys test accuracy and a
sharper trace. The run's checkpoint (state.json + state.safetensors: weights, optimiser, random streams) is
copied into ``--runs`` and resumed there as ``epoch + cooldown`` epochs whose last ``cooldown`` decay the rate
(``TrainConfig.cooldown_epochs``): the original run goes on untouched, and the branch resumes itself if cut.
Prints each epoch and writes the branch's history (test accuracy, the trace's calibration AUC) as JSON with
the epoch it branched at, then saves the calibrated pair in ``--runs``/pair.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from amint import checkpoint  # noqa: E402
from amint.train import TrainConfig, train_pair  # noqa: E402


def branch(source: Path, runs: Path) -> dict:
    """Copy the run's resumable state (not its kept weights) into runs/checkpoint once; its state.json."""
    target = runs / "checkpoint"
    if not (target / checkpoint.META).exists():
        target.mkdir(parents=True, exist_ok=True)
        for name in (checkpoint.META, "state.safetensors"):
            shutil.copy2(source / name, target / name)
    return json.loads((source / checkpoint.META).read_text())


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint", type=Path, help="the constant-schedule run's checkpoint folder")
    ap.add_argument("--cooldown", type=int, default=6, help="epochs of linear decay after the branch point")
    ap.add_argument("--runs", type=Path, required=True, help="the branch's folder (checkpoint, pair)")
    ap.add_argument("--out", type=Path, help="write the branch's history here as JSON")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    ap.add_argument("--device", default="auto")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    meta = branch(args.checkpoint, args.runs)
    if meta["config"].get("schedule") != "constant" or meta["phase"] not in ("joint", "task"):
        raise SystemExit(f"{args.checkpoint}: a cool-down branches off a constant schedule's backbone phase "
                         f"(this one: {meta['config'].get('schedule')}, phase {meta['phase']})")
    start = meta["epoch"]
    settings = meta["config"] | {"epochs": start + args.cooldown, "cooldown_epochs": args.cooldown,
                                 "checkpoint": str(args.runs / "checkpoint"), "out": str(args.runs / "pair"),
                                 "device": args.device}
    cfg = TrainConfig.from_dict(settings)
    t0 = time.time()

    def log(p) -> None:
        if p.kind == "epoch":
            print(f"[cooldown] {p.phase} {p.epoch}/{p.epochs} " + " ".join(
                f"{k} {v:.4f}" for k, v in p.metrics.items() if isinstance(v, float)), flush=True)

    pair = train_pair(cfg, callback=log)
    history = pair.config.training["history"]
    result = {"command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "source": str(args.checkpoint),
              "branched_after_epoch": start, "cooldown_epochs": args.cooldown, "wall_seconds": round(time.time() - t0),
              "before": [r for r in history if r["epoch"] <= start][-3:],
              "cooldown": [r for r in history if r["epoch"] > start],
              "pair": str(args.runs / "pair"), "metrics": pair.config.metrics}
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1))
    for r in result["before"] + result["cooldown"]:
        print(f"epoch {r['epoch']:3d}  test accuracy {r.get('test_accuracy', float('nan')):.4f}  "
              f"trace AUC (calibration) {r.get('cal_trace_auc', float('nan')):.4f}")


if __name__ == "__main__":
    main()

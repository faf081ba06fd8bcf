"""What makes the paper's trace head detect members: one change at a time against a small base recipe.

    python benchmarks/paper_ablations.py --threads 1                      # every variant below
    python benchmarks/paper_ablations.py --only base,loss_fixed --members 300

Base: the narrow ResNet-18 of benchmarks/paper_grid.py, Middle taps, the paper's head alone,
``--members`` members and 1.5x as many externals, batches of 32 + 32, 4 joint epochs and 1 head
epoch (active), the threshold at the best balanced accuracy on the calibration split. Each variant changes one
TrainConfig field (or a few that belong together, e.g. the published optimizer settings). Each
finished run writes its JSON under ``--runs`` and is skipped on a rerun, like the grid.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))

from paper_grid import SMALL_BACKBONES, SUMMARY_KEYS, run_one, with_test_subset  # noqa: E402

from amint.data import Benchmark, load_benchmark  # noqa: E402

# name -> (what it tests, TrainConfig overrides)
VARIANTS: dict[str, tuple[str, dict]] = {
    "base": ("AdamW 2e-3 one-cycle, batch 32 + 32, each loss / its first value, mint_weight 1, width 64 / 512", {}),
    "passive": ("task-only backbone (4 epochs), then the head on it frozen (5 epochs)", {"mode": "passive"}),
    "loss_fixed": ("raw sum of the two losses, not each / its first value", {"loss_norm": "fixed"}),
    "mint_weight_5": ("membership loss weighted 5x", {"mint_weight": 5.0}),
    "head_small": ("trace head width 16, MLP 64", {"head": {"trace": {"width": 16, "hidden": 64}, "memories": {}}}),
    "head_wide": ("trace head width 128, MLP 1024", {"head": {"trace": {"width": 128, "hidden": 1024}, "memories": {}}}),
    "entry_taps": ("Entry taps (act1, layer1) instead of Middle", {"setup": "entry"}),
    "augment": ("random 2-px shifts and flips for members and externals", {"augment": True}),
    "published_optim": ("the published settings in our loop: Adam 1e-4 constant, no weight decay, batch 64+64",
                        {"lr": 1e-4, "schedule": "constant", "weight_decay": 0.0, "batch_size": 64}),
    "epochs_12": ("12 joint epochs instead of 4", {"epochs": 12}),
    "epochs_24": ("24 joint epochs instead of 4", {"epochs": 24}),
    "passive_epochs_12": ("passive with 12 task epochs (then 13 head epochs): the control for epochs_12",
                          {"mode": "passive", "epochs": 12}),
    "untrained_head_25": ("a random backbone never trained, the head on it for 25 epochs: what the head memorises alone",
                          {"mode": "untrained", "epochs": 0, "head_epochs": 25}),
    "passive_epochs_24": ("passive with 24 task epochs (then 25 head epochs): the control for epochs_24",
                          {"mode": "passive", "epochs": 24}),
}


def base_settings(args: argparse.Namespace) -> dict:
    return dict(dataset=args.dataset, backbone="resnet18", backbone_kwargs=SMALL_BACKBONES["resnet18"],
                setup="middle", head={"trace": {}, "memories": {}}, n_members=args.members,
                n_external=args.members * 3 // 2, n_calibration=args.calibration, epochs=args.epochs,
                batch_size=args.batch_size,
                head_epochs=1, memory_views=0, target_fpr=None, monitor_samples=min(500, args.calibration), seed=0)


def run_variant(name: str, args: argparse.Namespace, runs: Path, bench: Benchmark | None, command: str) -> dict:
    settings = base_settings(args) | VARIANTS[name][1]
    if settings.get("mode") != "passive":
        return run_one(name, {"mode": "active"} | settings, runs, bench, command)
    # Passive: the backbone on the task alone, then the head on it, frozen, for as many epochs as active's head saw.
    backbone_dir = runs / f"{name}-backbone"
    run_one(f"{name}-backbone", settings | dict(head_epochs=0, out=str(backbone_dir)), runs, bench, command)
    return run_one(name, settings | dict(epochs=0, init_from=str(backbone_dir),
                                         head_epochs=settings["epochs"] + settings["head_epochs"]), runs, bench, command)


def markdown(results: dict) -> str:
    rows = ["| variant | what changes | MINT acc | AUC | TPR@1% | loss attack acc / AUC | task acc | train s |",
            "|" + "---|" * 8]
    for name, r in results["runs"].items():
        m, loss = r["metrics"], r["metrics"]["baselines"]["loss_attack"]
        rows.append(f"| {name} | {VARIANTS.get(name, ('',))[0]} | {m['mint_accuracy']:.3f} | {m['auc']:.3f} | "
                    f"{m['tpr_at_1pct_fpr']:.3f} | {loss['mint_accuracy']:.3f} / {loss['auc']:.3f} | "
                    f"{m['task_accuracy']:.3f} | {r['train_seconds']:.0f} |")
    return "\n".join(rows)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--only", default=",".join(VARIANTS), help="comma-separated variant names")
    p.add_argument("--members", type=int, default=1000)
    p.add_argument("--calibration", type=int, default=300)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=32, help="members per step (small pools need small batches)")
    p.add_argument("--test-subset", type=int, default=0, help="score only the first N test images; 0 = all")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--runs", default=str(ROOT / "runs" / "paper_ablations"))
    p.add_argument("--results", default=str(ROOT / "benchmarks" / "results" / "paper_ablations.json"))
    return p.parse_args(argv)


def main(argv: list[str] | None = None, bench: Benchmark | None = None) -> dict:
    import torch

    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.test_subset:
        bench = with_test_subset(bench or load_benchmark(args.dataset), args.test_subset)
    runs = Path(args.runs) / args.dataset
    command = "python benchmarks/paper_ablations.py " + " ".join(sys.argv[1:])
    results = {"dataset": args.dataset, "test_subset": args.test_subset or "all", "base": base_settings(args),
               "runs": {}}
    for name in args.only.split(","):
        results["runs"][name] = run_variant(name, args, runs, bench, command)
        Path(args.results).write_text(json.dumps(results, indent=1) + "\n")
        m = results["runs"][name]["metrics"]
        print(f"== {name}: " + " ".join(f"{k} {m[k]:.4f}" for k in SUMMARY_KEYS), flush=True)
    print(markdown(results))
    return results


if __name__ == "__main__":
    main()

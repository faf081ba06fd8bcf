"""Active vs passive MINT with the paper's head: backbones x setups, one command, resumable.

    python benchmarks/paper_grid.py --dataset fashion-mnist                 # the CPU scale (defaults below)
    python benchmarks/paper_grid.py --dataset cifar10 --paper-scale         # the paper's scale, on a GPU

Each cell (backbone, setup) is trained twice on the same membership split and budget:

- active: ``epochs`` of joint training (task loss + membership loss through the trace head, members
  and externals 1:1 in one batch), then ``head_epochs`` of the trace head on the frozen backbone;
- passive: the backbone trained on the task alone for the same ``epochs`` (once per backbone: the
  setup only moves the taps), then the same trace head trained on it, frozen, for
  ``epochs + head_epochs`` (so the head sees as many epochs as the active head does).

The head is the paper's MINT model alone (``amint.head.TraceConfig``: two convolutions per tapped map,
global pooling, an MLP, one logit; no hashed memories). The threshold maximises balanced accuracy on
the calibration split (the paper's metric is accuracy); every metric is on held-out members vs the
official test split. Each finished run writes a JSON under ``--runs``; a rerun skips it, so a crash
or a timeout loses one run. ``--table`` prints the Markdown table of a results file.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from amint.data import Benchmark, load_benchmark  # noqa: E402
from amint.train import TrainConfig, train_pair  # noqa: E402

# Narrow variants that train in minutes on a CPU; --paper-scale uses timm's stock models instead.
SMALL_BACKBONES: dict[str, dict[str, Any]] = {
    "resnet18": {"channels": [16, 32, 64, 128], "stem_type": "deep", "stem_width": 8},
    "mobilenetv3_small_100": {},
    "vit_tiny_patch16_224": {"depth": 6, "embed_dim": 96, "num_heads": 3, "patch_size": 7},
    "densenet121": {"growth_rate": 8},  # 121 layers, a quarter of the growth rate
}
SETUPS = ("entry", "middle", "output")
PAPER_HEAD = {"trace": {}, "memories": {}}  # TraceConfig defaults: width 64, hidden 512

# amint-method.md (the paper's Table 1). The paper has no Fashion-MNIST: MNIST is the nearest dataset.
PAPER = {
    "dataset": "MNIST (nearest to Fashion-MNIST in the paper)",
    "active_mint_range": "0.77-0.88",
    "active_best": "0.88 (Middle, MobileNet; task 0.92)",
    "task_range": "0.80-0.99",
    "passive_mint_range": "0.51-0.66",
    "baselines": "CIFAR-10 / GTSRB, ResNet50: attacks 0.61-0.79, passive 0.66 / 0.61, active 0.86 / 0.86",
}

SUMMARY_KEYS = ("mint_accuracy", "auc", "tpr_at_1pct_fpr", "tpr_at_0_1pct_fpr", "fpr_at_threshold", "task_accuracy")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--data-root", default=None)
    p.add_argument("--backbones", default=",".join(SMALL_BACKBONES), help="comma-separated timm names")
    p.add_argument("--setups", default=",".join(SETUPS))
    p.add_argument("--members", type=int, default=3000)
    p.add_argument("--external", type=int, default=4000)
    p.add_argument("--calibration", type=int, default=500)
    p.add_argument("--epochs", type=int, default=3, help="backbone epochs, joint (active) or task-only (passive)")
    p.add_argument("--head-epochs", type=int, default=1, help="trace-head epochs on the frozen active backbone")
    p.add_argument("--test-subset", type=int, default=0,
                   help="score only the first N official test images (the held-out non-members); 0 = all")
    p.add_argument("--train", default="{}", help="more TrainConfig fields as JSON, the same for active and passive")
    p.add_argument("--paper-scale", action="store_true",
                   help="the paper's split proportions (all of the train split), stock timm widths, 30 epochs")
    p.add_argument("--threads", type=int, default=0, help="torch threads; 0 = torch's default")
    p.add_argument("--runs", default=str(ROOT / "runs" / "paper_grid"), help="per-run JSON and the passive backbones")
    p.add_argument("--results", default=None, help="combined JSON; default benchmarks/results/paper_grid_DATASET.json")
    p.add_argument("--only-finished", action="store_true",
                   help="train nothing: collect the runs already finished under --runs into --results")
    p.add_argument("--table", default=None, metavar="RESULTS_JSON", help="print the Markdown table of a results file")
    return p.parse_args(argv)


def recipe(args: argparse.Namespace, backbone: str) -> dict[str, Any]:
    """TrainConfig fields shared by a backbone's active and passive runs."""
    base = dict(dataset=args.dataset, data_root=args.data_root, backbone=backbone, head=PAPER_HEAD,
                target_fpr=None, monitor_samples=500, memory_views=0, seed=0)
    if args.paper_scale:
        base |= dict(n_members=None, n_external=None, n_calibration=None, backbone_kwargs={})
    else:
        base |= dict(n_members=args.members, n_external=args.external, n_calibration=args.calibration,
                     backbone_kwargs=SMALL_BACKBONES.get(backbone, {}))
    return base | json.loads(args.train)


def run_one(name: str, settings: dict[str, Any], runs: Path, bench: Benchmark | None, command: str,
            train: bool = True) -> dict | None:
    """Train one pair (skipped when its JSON exists) and return its record; None if unfinished and not ``train``."""
    record_path = runs / f"{name}.json"
    if record_path.exists():
        return json.loads(record_path.read_text())
    if not train:
        return None
    cfg = TrainConfig(**settings)
    t0 = time.time()

    def report(p) -> None:
        if p.kind == "epoch":
            shown = " ".join(f"{k} {v:.4f}" for k, v in p.metrics.items() if isinstance(v, float))
            print(f"[{name}] {p.phase} {p.epoch}/{p.epochs}: {shown}", flush=True)

    pair = train_pair(cfg, callback=report, bench=bench)
    metrics = {k: v for k, v in pair.config.metrics.items() if k != "roc"}
    record = {"run": name, "config": asdict(cfg), "metrics": metrics, "history": pair.config.training["history"],
              "train_seconds": pair.config.training["train_seconds"], "wall_seconds": round(time.time() - t0, 1),
              "parameters": pair.config.training["parameters"], "taps": pair.config.taps,
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": machine(), "command": command}
    record_path.parent.mkdir(parents=True, exist_ok=True)
    record_path.write_text(json.dumps(record, indent=1) + "\n")
    print(f"[{name}] " + " ".join(f"{k} {metrics.get(k, float('nan')):.4f}" for k in SUMMARY_KEYS), flush=True)
    return record


def machine() -> str:
    return f"{platform.machine()} {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads"


def run_grid(args: argparse.Namespace, bench: Benchmark | None = None) -> dict:
    runs = Path(args.runs) / args.dataset.replace(":", "_").replace("/", "_")
    command = "python benchmarks/paper_grid.py " + " ".join(sys.argv[1:])
    epochs = 30 if args.paper_scale else args.epochs
    cells = []
    train = not args.only_finished
    for backbone in args.backbones.split(","):
        base = recipe(args, backbone)
        # Passive: one task-only backbone per backbone (the setup only moves the taps), saved for the heads.
        backbone_dir = runs / backbone / "passive-backbone"
        run_one(f"{backbone}/passive-backbone", base | dict(mode="passive", epochs=epochs, head_epochs=0,
                                                            setup="middle", out=str(backbone_dir)),
                runs, bench, command, train)
        for setup in args.setups.split(","):
            active = run_one(f"{backbone}/{setup}-active", base | dict(mode="active", setup=setup, epochs=epochs,
                                                                       head_epochs=args.head_epochs),
                             runs, bench, command, train)
            passive = run_one(f"{backbone}/{setup}-passive", base | dict(
                mode="passive", setup=setup, epochs=0, init_from=str(backbone_dir),
                head_epochs=epochs + args.head_epochs), runs, bench, command, train)
            if active is None or passive is None:
                continue  # --only-finished: this cell has not finished
            cells.append({"backbone": backbone, "setup": setup, "active": active, "passive": passive})
            save(args, cells)
    return save(args, cells)


def save(args: argparse.Namespace, cells: list[dict]) -> dict:
    out = {"dataset": args.dataset, "test_subset": args.test_subset or "all", "paper": PAPER, "cells": cells}
    path = Path(args.results or ROOT / "benchmarks" / "results" / f"paper_grid_{args.dataset}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1) + "\n")
    return out


def _fmt(v: float | None) -> str:
    return "" if v is None else f"{v:.3f}"


def markdown(results: dict) -> str:
    """Table-1-shaped: per cell, MINT accuracy / task accuracy for active and passive, AUC, TPR, attacks."""
    head = ("| backbone | setup | active MINT acc | passive MINT acc | active AUC | passive AUC | "
            "active TPR@1% / 0.1% | passive TPR@1% / 0.1% | task acc active / passive | "
            "loss / conf. / entropy attack acc (active) | paper (MNIST) active / passive MINT acc |")
    rows = [head, "|" + "---|" * 11]
    for c in results["cells"]:
        a, p = c["active"]["metrics"], c["passive"]["metrics"]
        attacks = " / ".join(_fmt(a["baselines"][f"{k}_attack"]["mint_accuracy"]) for k in ("loss", "confidence", "entropy"))
        paper = results["paper"]
        best = paper["active_best"] if (c["setup"], "mobilenet") == ("middle", c["backbone"][:9]) else paper["active_mint_range"]
        rows.append(f"| {c['backbone']} | {c['setup']} | {_fmt(a['mint_accuracy'])} | {_fmt(p['mint_accuracy'])} | "
                    f"{_fmt(a['auc'])} | {_fmt(p['auc'])} | {_fmt(a['tpr_at_1pct_fpr'])} / {_fmt(a['tpr_at_0_1pct_fpr'])} | "
                    f"{_fmt(p['tpr_at_1pct_fpr'])} / {_fmt(p['tpr_at_0_1pct_fpr'])} | "
                    f"{_fmt(a['task_accuracy'])} / {_fmt(p['task_accuracy'])} | {attacks} | "
                    f"{best} / {paper['passive_mint_range']} |")
    return "\n".join(rows)


def with_test_subset(bench: Benchmark, n: int) -> Benchmark:
    """The benchmark with only its first ``n`` test images: evaluation scores the whole test split, and on a
    shared CPU that costs as much as training a small pair; the balanced metric uses min(members, n) of each."""
    if not n or n >= len(bench.test_images):
        return bench
    return Benchmark(bench.name, bench.train_images, bench.train_labels, bench.test_images[:n],
                     bench.test_labels[:n], bench.class_names, bench.mean, bench.std)


def main(argv: list[str] | None = None, bench: Benchmark | None = None) -> dict:
    args = parse_args(argv)
    if args.table:
        results = json.loads(Path(args.table).read_text())
        print(markdown(results))
        return results
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.test_subset:
        bench = with_test_subset(bench or load_benchmark(args.dataset, args.data_root), args.test_subset)
    results = run_grid(args, bench)
    print(markdown(results))
    return results


if __name__ == "__main__":
    main()

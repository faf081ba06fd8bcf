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


def passive_notes(passive: dict, active_task_accuracy: float) -> str:
    """The passive baseline as a card section: same split, same head, backbone trained without the MINT loss."""
    m = passive["metrics"]
    rows = ["| method | accuracy | AUC | TPR @ 1% FPR | TPR @ 0.1% FPR | task accuracy |", "|---|---|---|---|---|---|",
            f"| passive MINT (same head) | {m['mint_accuracy']:.4f} | {m['auc']:.4f} | {m['tpr_at_1pct_fpr']:.4f} | "
            f"{m['tpr_at_0_1pct_fpr']:.4f} | {m['task_accuracy']:.4f} |"]
    loss = m["baselines"]["loss_attack"]
    rows.append(f"| loss attack on the passive model | {loss['mint_accuracy']:.4f} | {loss['auc']:.4f} | "
                f"{loss['tpr_at_1pct_fpr']:.4f} | {loss['tpr_at_0_1pct_fpr']:.4f} | |")
    gap = 100 * (m["task_accuracy"] - active_task_accuracy)
    return ("Passive baseline, measured on the same membership split: the same backbone and the same MINT head, "
            "but the backbone was trained on the task alone (no MINT loss), then the head was trained on the "
            "frozen model for the same number of epochs.\n\n" + "\n".join(rows) +
            f"\n\nThe passive model's task accuracy is {gap:+.2f} points from this pair's. "
            f"Produced by `python benchmarks/train_default_pair.py` ({passive['date']}).")


def write_card(pair_dir: Path, passive_log: Path) -> None:
    """Re-render the default pair's model card with the passive baseline beside its own numbers."""
    from amint.card import render_model_card
    from amint.pair import CARD_NAME, CONFIG_NAME, PairConfig

    config = PairConfig.load(pair_dir / CONFIG_NAME)
    notes = passive_notes(json.loads(passive_log.read_text()), config.metrics["task_accuracy"])
    (pair_dir / CARD_NAME).write_text(render_model_card(config, notes=notes))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=["active", "passive"])
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    ap.add_argument("--card-only", action="store_true", help="only re-render the default pair's card from the logs")
    args = ap.parse_args()
    results = Path(args.out)
    results.mkdir(parents=True, exist_ok=True)
    targets = {"active": ROOT / "models" / "fashion-mnist-resnet18", "passive": results / "passive-pair"}
    for mode in ["active", "passive"]:
        if args.card_only or (args.only and mode != args.only):
            continue
        log = run(mode, targets[mode])
        (results / f"default_pair_{mode}.json").write_text(json.dumps(log, indent=1) + "\n")
    if (results / "default_pair_passive.json").is_file() and (targets["active"] / "config.json").is_file():
        write_card(targets["active"], results / "default_pair_passive.json")


if __name__ == "__main__":
    main()

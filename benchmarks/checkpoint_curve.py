"""The epochs axis of one training run, read from its checkpoint (amint/checkpoint.py's state.json).

    python benchmarks/checkpoint_curve.py runs/tc25k/trace-25000-60/active/checkpoint \
        --out benchmarks/results/trace_curve_25k.json

Every epoch of a run writes its history row (task and membership losses, test accuracy, the trace head's
accuracy and AUC on the monitored calibration images, seconds) into the checkpoint, so a run that is still
going, or was cut by the end of a session, can be plotted and tabled without stopping it. Prints the table
(epoch, test accuracy, calibration trace AUC) and writes the rows with the run's settings as JSON.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

SETTINGS = ("n_members", "n_external", "n_calibration", "monitor_samples", "backbone", "backbone_kwargs",
            "stem_stride", "setup", "head", "optimizer", "lr", "weight_decay", "schedule", "mint_weight",
            "batch_size", "epochs", "mode", "edit_views", "seed")


def read_curve(checkpoint: Path) -> dict:
    state = json.loads((checkpoint / "state.json").read_text())
    config = state.get("config", {})
    return {"checkpoint": str(checkpoint), "read": time.strftime("%Y-%m-%d %H:%M"),
            "phase": state.get("phase"), "epochs_done": state.get("epoch"),
            "settings": {k: config[k] for k in SETTINGS if k in config},
            "history": state.get("history", [])}


def table(curve: dict) -> str:
    rows = ["| epoch | test accuracy | trace AUC (calibration) | seconds |", "|---|---|---|---|"]
    for r in curve["history"]:
        rows.append(f"| {r.get('phase', '')} {r['epoch']} | {r.get('test_accuracy', float('nan')):.4f} | "
                    f"{r.get('cal_trace_auc', float('nan')):.4f} | {r.get('seconds', 0):.0f} |")
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("checkpoint", type=Path, help="a run's checkpoint folder (holds state.json)")
    ap.add_argument("--out", type=Path, help="write the curve here as JSON")
    args = ap.parse_args()
    if not (args.checkpoint / "state.json").is_file():
        ap.error(f"{args.checkpoint} holds no state.json: not a training checkpoint")
    curve = read_curve(args.checkpoint)
    print(table(curve))
    if args.out:
        args.out.write_text(json.dumps(curve, indent=1) + "\n")


if __name__ == "__main__":
    main()

"""The epochs axis of several trace runs in one picture: the run's own trace head per epoch, and the task.

    python benchmarks/plot_trace_curves.py \\
        benchmarks/results/trace_curve_25k.json="trace recipe, batch 128 (constant)" \\
        benchmarks/results/trace_controls_25k_views_mint1_taps23.json="views,mint1,taps23, batch 128, 50 + 8" \\
        benchmarks/results/trace_controls_25k_views_mint1_taps23_batch64_100.json="+ batch64, 90 + 10 (default pair)" \\
        --png benchmarks/results/trace_25k_curves.png

Each source is a ``trace_controls.py`` record (its ``active_curve`` or ``curve``), a ``checkpoint_curve.py`` JSON
(``history``) or a run's checkpoint folder (its state.json, for a run still going), with ``=label`` to name it.
The AUC is the calibration monitor's: calibration members (members, so the head trained on them) against
calibration non-members no model or head saw, per joint epoch; the task is the accuracy on the monitored test images.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from checkpoint_curve import read_curve  # noqa: E402
from collect_levers import curve_rows, plot_curves  # noqa: E402


def read_rows(source: Path) -> list[list[float]]:
    """[epoch, calibration trace AUC, test accuracy] per joint epoch, from any of the three kinds of source."""
    d = read_curve(source) if source.is_dir() else json.loads(source.read_text())
    rows = d.get("active_curve") or d.get("curve") or d.get("history")
    if not rows:
        raise SystemExit(f"{source}: no active_curve, curve or history to plot")
    return curve_rows(rows) if isinstance(rows[0], dict) else [list(r[:3]) for r in rows]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sources", nargs="+", help="PATH or PATH=label: a record, a curve JSON or a checkpoint folder")
    ap.add_argument("--png", type=Path, required=True, help="where to draw them")
    args = ap.parse_args(argv)
    runs = {}
    for item in args.sources:
        path, _, label = item.partition("=")
        runs[label or Path(path).stem] = {"curve": read_rows(Path(path))}
    plot_curves(Path("."), {"runs": runs}, list(runs), args.png)
    print(f"wrote {args.png}")


if __name__ == "__main__":
    main()

"""Gather the 5,000-member lever runs of trace_controls.py into one results file, and plot their trace curves.

    python benchmarks/collect_levers.py RUNS benchmarks/results/trace_levers_5k.json \
        --plot base,head_small,head_wide,maxpool,dropout,members2 --png benchmarks/results/trace_levers_5k_curves.png

RUNS holds each run's ``--results`` JSON (``--part active``, and ``--part controls`` where the controls were
run) beside its run folders (``<recipe>+<levers>-<members>-<epochs>/active/pair``, whose config.json keeps the
per-epoch history). A run is named by its levers joined with "_" ("base" for none), with "_<epochs>" when it
trained other than 33 epochs and "_cool<n>" when its last n epochs, not 6, cooled down; a controls file merges
into the run of the same settings, and its command is kept beside the active part's. Each run keeps its monitor
curve, so ``--keep`` can add new runs to an OUT whose earlier runs' folders are gone (another machine) and still
plot them.
"""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

ABOUT = ("The trace recipe at 5,000 members with one lever each (benchmarks/trace_recipe.py LEVERS), trained by "
         "trace_controls.py --part active (the trace head alone, the paper's protocol: threshold at the best "
         "balanced accuracy on the calibration split, 4,000 scored members vs the 10,000 test images; edits: "
         "2,000 + 2,000 at that threshold; fresh_head: a new head on the frozen backbone, scored on members no head saw)")
ACTIVE_KEYS = ("settings", "active", "fresh_head", "active_edited", "passive", "untrained", "command", "machine")
BASE_EPOCHS = 33
BASE_COOLDOWN = 6  # the rounds' 27 constant + 6 cool-down epochs; records before 2026-12-03 do not say theirs


def run_name(settings: dict) -> str:
    """levers joined by "_" ("base" for none), "_<epochs>" for other than 33, "_cool<n>" for another cool-down."""
    name = "_".join(settings["levers"]) or "base"
    if settings["joint_epochs"] != BASE_EPOCHS:
        name += f"_{settings['joint_epochs']}"
    cooldown = settings.get("cooldown_epochs", BASE_COOLDOWN)
    return name if cooldown == BASE_COOLDOWN else f"{name}_cool{cooldown}"


def run_folder(runs: Path, settings: dict) -> Path:
    """The run's pair folder: in RUNS, or one folder down (runs that differ only in their cool-down share a folder
    name, so they train under --runs folders of their own), the one whose config trained the record's cool-down."""
    name = f"{'+'.join([settings['recipe'], *settings['levers']])}-{settings['members']}-{settings['joint_epochs']}"
    found = [p for p in (runs / name / "active" / "pair", *sorted(runs.glob(f"*/{name}/active/pair")))
             if (p / "config.json").exists()]
    if "cooldown_epochs" in settings:
        found = [p for p in found if _trained_cooldown(p) == settings["cooldown_epochs"]]
    if len(found) != 1:
        raise SystemExit(f"{len(found)} run folders {name}/active/pair under {runs} trained as the record says "
                         f"(cool-down {settings.get('cooldown_epochs', 'unrecorded')}): keep one per record")
    return found[0]


def _trained_cooldown(pair: Path) -> int | None:
    return json.loads((pair / "config.json").read_text())["training"].get("config", {}).get("cooldown_epochs")


def curve_rows(history: list[dict]) -> list[list]:
    """[epoch, calibration trace AUC, test accuracy] per joint epoch of a training history."""
    return [[h["epoch"], h.get("cal_trace_auc"), h.get("test_accuracy")] for h in history
            if h.get("phase", "joint") == "joint"]


def joint_history(runs: Path, settings: dict) -> list[dict]:
    config = json.loads((run_folder(runs, settings) / "config.json").read_text())
    return [h for h in config["training"]["history"] if h.get("phase", "joint") == "joint"]


def summarise(runs: Path, d: dict) -> dict:
    """The active part's readings, with how long it trained and how fast its trace formed."""
    hist = joint_history(runs, d["settings"])
    last = hist[-1] if hist else {}
    return {k: d[k] for k in ACTIVE_KEYS if k in d} | {
        "train_wall_seconds": round(sum(h.get("seconds", 0) for h in hist)),
        "last_epoch_monitor": {k: last.get(k) for k in ("epoch", "test_accuracy", "cal_trace_auc")},
        "curve": curve_rows(hist),
        # How fast the trace forms: the first joint epoch whose calibration monitor AUC reaches 0.8 (None: never).
        "first_epoch_cal_auc_0_8": next((h["epoch"] for h in hist if h.get("cal_trace_auc", 0) >= 0.8), None)}


def merge_controls(run: dict, controls: dict) -> dict:
    """A --part controls file beside its active part: passive, untrained, the passive probe, both commands."""
    return run | {"passive": controls["passive"], "untrained": controls["untrained"],
                  "fresh_head": run["fresh_head"] | {"passive": controls["fresh_head"]["passive"]},
                  "command": {"active": run["command"], "controls": controls["command"]}}


def file_parts(d: dict) -> dict[str, dict]:
    """The parts a results file holds, by name: one file per part (its ``command``), or both parts in one file
    (trace_controls.py merges a second part into the same ``--results``; ``commands`` names each part's)."""
    commands = d.get("commands", {})
    if {"active", "controls"} <= set(commands):
        return {"active": {k: v for k, v in d.items() if k not in ("passive", "untrained")}
                | {"command": commands["active"]["command"]},
                "controls": {"passive": d["passive"], "untrained": d["untrained"], "fresh_head": d["fresh_head"],
                             "command": commands["controls"]["command"]}}
    part = "active" if "--part active" in d["command"] else "controls" if "--part controls" in d["command"] else None
    return {part: d} if part else {}


def collect(runs: Path, tag: str = "") -> dict:
    """Every 5,000-member result in ``runs``, by run name (+ "_tag"): the --part active file's readings, its
    controls merged."""
    parts: dict[str, dict[str, dict]] = {}
    for f in sorted(runs.glob("*.json")):
        d = json.loads(f.read_text())
        if d.get("settings", {}).get("members") != 5000:
            continue
        name = run_name(d["settings"]) + (f"_{tag}" if tag else "")
        for part, record in file_parts(d).items():
            if part in parts.setdefault(name, {}):
                raise SystemExit(f"two {part} results for {name!r} in {runs}: keep one")
            parts[name][part] = record
    out = {"about": ABOUT, "runs": {}}
    for name, found in parts.items():
        if "active" in found:
            run = summarise(runs, {k: v for k, v in found["active"].items() if k not in ("passive", "untrained")})
            out["runs"][name] = merge_controls(run, found["controls"]) if "controls" in found else run
    ref = runs / "reference5k.json"
    if ref.exists():
        r = json.loads(ref.read_text())
        out["pixel_reference"] = r["pixel_reference"] | {"command": r["command"]}
    return out


def keep_earlier(new: dict, earlier: dict) -> dict:
    """``new`` plus the runs (and pixel reference) of an earlier results file that ``new`` does not hold."""
    runs = earlier.get("runs", {}) | new["runs"]
    out = new | {"runs": dict(sorted(runs.items()))}
    if "pixel_reference" not in new and "pixel_reference" in earlier:
        out["pixel_reference"] = earlier["pixel_reference"]
    return out


def run_curve(runs: Path, run: dict) -> tuple[list, list, list]:
    """Epochs, calibration AUC and test accuracy per joint epoch: kept in the results, else read from the run."""
    rows = run.get("curve") or curve_rows(joint_history(runs, run["settings"]))
    return tuple(map(list, zip(*rows)))


def plot_curves(runs: Path, results: dict, names: list[str], png: Path) -> None:
    """The trace's calibration AUC and the model's test accuracy per joint epoch, one line per run."""
    from matplotlib.figure import Figure
    from PIL import Image

    fig = Figure(figsize=(10, 3.8), layout="constrained")
    auc_ax, task_ax = fig.subplots(1, 2)
    for name in names:
        epochs, aucs, accuracies = run_curve(runs, results["runs"][name])
        style = dict(color="black", linewidth=2) if name.split("_")[0] == "base" else dict(linewidth=1.2)
        auc_ax.plot(epochs, aucs, label=name, **style)
        task_ax.plot(epochs, accuracies, label=name, **style)
    auc_ax.axhline(0.8, color="grey", linestyle=":", linewidth=1)
    # The monitor's members trained the head too: it reads the model's trace plus what the head memorised.
    auc_ax.set(xlabel="joint epoch", ylabel="AUC, calibration members vs non-members",
               title="The run's own trace head, per epoch")
    task_ax.set(xlabel="joint epoch", ylabel="task accuracy (test monitor)", title="The audited model's task")
    auc_ax.legend(fontsize=8)
    for ax in (auc_ax, task_ax):
        ax.grid(alpha=0.3)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    # A palette PNG: the committed plot is a tenth of the size, the lines unchanged.
    Image.open(buffer).convert("RGB").quantize(colors=64, method=Image.Quantize.MEDIANCUT,
                                               dither=Image.Dither.NONE).save(png, optimize=True)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", type=Path, help="the folder the lever runs wrote into (--runs and --results)")
    ap.add_argument("out", type=Path, help="the merged results JSON")
    ap.add_argument("--plot", default="", help="comma-separated run names to draw (e.g. base,members2)")
    ap.add_argument("--png", type=Path, help="where to draw them")
    ap.add_argument("--keep", action="store_true",
                    help="keep the runs already in OUT that RUNS does not hold (a run in both: RUNS's)")
    ap.add_argument("--tag", default="",
                    help="appended to the names of RUNS's runs (e.g. another machine's reruns beside the earlier ones)")
    args = ap.parse_args(argv)
    results = collect(args.runs, args.tag)
    if args.keep and args.out.exists():
        results = keep_earlier(results, json.loads(args.out.read_text()))
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    if args.plot and args.png:
        plot_curves(args.runs, results, [n for n in args.plot.split(",") if n], args.png)
    print(json.dumps({k: {kk: v["active"][kk] for kk in ("auc", "task_accuracy")} for k, v in results["runs"].items()}))


if __name__ == "__main__":
    main()

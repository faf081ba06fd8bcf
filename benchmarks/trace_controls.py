"""Where the trace lives: the active pair's trace head beside its controls, on one split, trace alone.

    python benchmarks/trace_controls.py --members 5000 --epochs 30 --threads 1
    python benchmarks/trace_controls.py --members 25000 --epochs 40 --active runs/trace-25k/pair   # reuse a trained pair

- active: ``RECIPES[--recipe]`` (benchmarks/trace_recipe.py), joint training, its own trace head;
- passive: the same recipe with the task loss alone, then a trace head on the frozen backbone;
- untrained: the same architecture never trained, then a trace head on it;
- fresh_head.active / fresh_head.passive: the members minus the calibration members split A/B by seed;
  a new trace head learns A against the externals on the frozen backbone; threshold fitted on the
  calibration split; B (never seen by any head) scored against the test split. A trace written into
  the backbone shows here; a head that memorised its own members does not;
- pixel_reference: model-free, the nearest member in raw pixels, on the same edited images (--edits).

Control heads train for the active run's joint epochs + head epochs (the paper_ablations convention),
on maps computed once from the frozen backbone (amint.probe). Every reading is the trace head alone,
at the threshold that maximises balanced accuracy on the calibration split (the paper's metric), on
the scored members (members minus calibration members) against the test split. Backbones train with
checkpoints in ``--runs``: a rerun resumes them.
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
sys.path.insert(0, str(ROOT / "benchmarks"))

import torch  # noqa: E402

from amint.backbones import setup_taps, tap_indices  # noqa: E402
from amint.data import Benchmark, load_benchmark  # noqa: E402
from amint.head import TraceConfig  # noqa: E402
from amint.pair import AuditedPair  # noqa: E402
from amint.probe import (MapCache, control_head, fresh_head_probe, score_trace, trace_alone,  # noqa: E402
                         trace_alone_edited)
from amint.robustness import pixel_reference  # noqa: E402
from amint.splits import MembershipSplit  # noqa: E402
from amint.train import TrainConfig, build_pair, build_split, train_pair  # noqa: E402
from collect_levers import curve_rows  # noqa: E402
from trace_recipe import settings  # noqa: E402

KEYS = ("mint_accuracy", "auc", "tpr_at_1pct_fpr", "tpr_at_0_1pct_fpr", "fpr_at_threshold", "task_accuracy")


def backbone(name: str, mode: str, args, bench: Benchmark, given: str | None) -> AuditedPair:
    """A trained pair of this recipe and mode (loaded when given, else trained with a checkpoint in --runs)."""
    if given:
        return at_recipe_taps(AuditedPair.from_pretrained(given), args)
    start = {"init_from": args.init_from} if args.init_from and mode == "active" else {}
    origin = f"+from-{Path(args.init_from).name}" if start else ""
    folder = Path(args.runs) / f"{'+'.join([args.recipe, *args.levers])}{origin}-{args.members}-{args.epochs}" / name
    if (folder / "pair" / "config.json").exists():
        pair = AuditedPair.from_pretrained(folder / "pair")
        trained = pair.config.training.get("config", {}).get("cooldown_epochs", 0)
        if trained != args.cooldown:  # the folder's name does not say its cool-down: never quote another run's pair
            raise ValueError(f"{folder / 'pair'} trained with a {trained}-epoch cool-down, this run asks "
                             f"--cooldown {args.cooldown}: give it a --runs folder of its own")
        return pair
    cfg = TrainConfig(**settings(args.recipe, args.members, args.levers, mode=mode, epochs=args.epochs,
                                 device=args.device, cooldown_epochs=args.cooldown,
                                 checkpoint=str(folder / "checkpoint"), keep_every=args.keep_every,
                                 out=str(folder / "pair"), **({"head_epochs": 0} if mode == "passive" else {}),
                                 **start))
    log = lambda p: p.kind == "epoch" and print(f"[{name}] {p.phase} {p.epoch}/{p.epochs} " + " ".join(  # noqa: E731
        f"{k} {v:.4f}" for k, v in p.metrics.items() if isinstance(v, float)), flush=True)
    return train_pair(cfg, callback=log, bench=bench)


def at_recipe_taps(pair: AuditedPair, args) -> AuditedPair:
    """A given backbone read where this run's recipe and levers tap (a passive backbone serves every tap lever: its
    training never saw a head), not where the pair it came from tapped."""
    s = settings(args.recipe, args.members, args.levers)
    taps = list(s.get("taps") or setup_taps(pair.backbone, s["setup"]))
    if taps != pair.config.taps:
        pair.config.taps, pair.config.setup = taps, "custom"
        pair.tap_indices = tap_indices(pair.backbone, taps)
        pair.head.trace = None  # sized for the old taps; the controls train their own heads on the maps
    return pair


def untrained(args, bench: Benchmark) -> AuditedPair:
    cfg = TrainConfig(**settings(args.recipe, args.members, args.levers, mode="untrained", epochs=0,
                                 device=args.device))
    torch.manual_seed(cfg.seed)
    return build_pair(cfg, bench, build_split(cfg, bench)).eval()


def pick(metrics: dict) -> dict:
    return {k: metrics[k] for k in KEYS if k in metrics} | {k: metrics[k] for k in ("head_epochs", "n_train_members",
                                                                                    "n_scored_members") if k in metrics}


def recipe_run(args, bench: Benchmark) -> tuple[MembershipSplit, TraceConfig, int]:
    """The split, trace head and joint + head epochs an active run of this recipe has (the same seed gives the same
    split), so that the controls can run without the active pair, in another session or process."""
    cfg = TrainConfig(**settings(args.recipe, args.members, args.levers, epochs=args.epochs))
    return build_split(cfg, bench), TraceConfig(**cfg.head_config().trace.__dict__), cfg.epochs + cfg.head_epochs


def pair_run(active: AuditedPair) -> tuple[MembershipSplit, TraceConfig, int]:
    return (MembershipSplit.from_config(active.config.split), TraceConfig(**active.head_config.trace.__dict__),
            trained_epochs(active.config.training))


def trained_epochs(training: dict) -> int:
    """Joint + head epochs of a pair's training, those of the pairs it started from (``init_from``) included: a run
    continued from a trained pair has had them all, and its control heads train as long (the paper_ablations
    convention)."""
    config = training.get("config", {})
    earlier = (training.get("init_from") or {}).get("training") or {}
    return config.get("epochs", 0) + config.get("head_epochs", 0) + (trained_epochs(earlier) if earlier else 0)


def run(args, bench: Benchmark) -> dict:
    if args.part in ("controls", "reference") and not args.active:
        active, (split, head_cfg, epochs) = None, recipe_run(args, bench)
    else:
        active = backbone("active", "active", args, bench, args.active)
        split, head_cfg, epochs = pair_run(active)
    control_epochs = args.control_epochs or epochs
    out: dict = json.loads(Path(args.results).read_text()) if args.part != "all" and Path(args.results).exists() else {}
    out.setdefault("fresh_head", {})
    t0 = time.time()
    if args.part in ("all", "active"):
        _active_part(out, active, bench, split, head_cfg, control_epochs, args)
    if args.part in ("all", "controls"):
        _control_part(out, split, head_cfg, control_epochs, args, bench)
    if args.part in ("all", "reference") and args.edits:
        # Model-free: the nearest member in raw pixels, threshold fitted on the calibration split, the same images.
        spec = (active or untrained(args, bench)).config
        out["pixel_reference"] = pixel_reference(bench, split, spec, tuple(args.edits.split(",")), n=args.edits_n)
        print("pixel reference", out["pixel_reference"], flush=True)
    out["settings"] = {"recipe": args.recipe, "levers": args.levers, "members": args.members, "joint_epochs": epochs,
                       "cooldown_epochs": args.cooldown, "control_head_epochs": control_epochs, "scored": args.max_scored,
                       "active_pair": args.active, "passive_pair": args.passive,
                       "init_from": args.init_from and Path(args.init_from).name}
    ran = {"command": "python benchmarks/trace_controls.py " + " ".join(args.argv),
           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "seconds": round(time.time() - t0),
           "machine": f"{platform.machine()} {os.cpu_count()} cores, torch {torch.__version__}, "
                      f"{torch.get_num_threads()} threads"}
    # Parts run in different sessions or processes merge into one record: each keeps the command that made it.
    out.setdefault("commands", {})[args.part] = ran
    out |= ran | {"seconds": ran["seconds"] + (out.get("seconds", 0) if args.part != "all" else 0)}
    return out


def joint_curve(pair: AuditedPair) -> list[list]:
    """[epoch, calibration monitor AUC, monitored test accuracy] per joint epoch of a pair's training: the epochs axis
    of one run, kept in the results beside the end point."""
    return curve_rows(pair.config.training.get("history", []))


def _active_part(out: dict, active: AuditedPair, bench: Benchmark, split: MembershipSplit, head_cfg: TraceConfig,
                 control_epochs: int, args) -> None:
    out["active_curve"] = joint_curve(active)
    cache = MapCache(active, bench)
    out["active"] = pick(trace_alone(active, bench, split, max_scored=args.max_scored, cache=cache))
    out["fresh_head"]["active"] = pick(fresh_head_probe(cache, split, head_cfg, control_epochs,
                                                       max_scored=args.max_scored))
    del cache
    print("active", out["active"], "\nfresh active", out["fresh_head"]["active"], flush=True)
    if args.edits:
        edited = trace_alone_edited(active, bench, split, args.edits.split(","), max_scored=args.edits_n)
        out["active_edited"] = {k: pick(v) for k, v in edited.items()}
        print("active edited", out["active_edited"], flush=True)


def _control_part(out: dict, split: MembershipSplit, head_cfg: TraceConfig, control_epochs: int, args,
                  bench: Benchmark) -> None:
    """Passive, its fresh-head probe and untrained, each saved to --results as it finishes: a rerun after a killed
    session skips the controls already in the record (each head is tens of minutes on a CPU)."""
    kept = [name for name in ("passive", "untrained") if name in out]
    if kept:  # a rerun with other settings must not quote these: said, so a reader deletes the record to recompute
        print(f"kept {', '.join(kept)} from {args.results} (delete them there to measure again)", flush=True)
    if "passive" not in out or "passive" not in out["fresh_head"]:
        passive = backbone("passive", "passive", args, bench, args.passive)
        cache = MapCache(passive, bench)
        head = control_head(cache, split, head_cfg, control_epochs)
        out["passive"] = pick(score_trace(head, cache, split, split.eval_members, max_scored=args.max_scored))
        out["fresh_head"]["passive"] = pick(fresh_head_probe(cache, split, head_cfg, control_epochs,
                                                             max_scored=args.max_scored))
        del cache
        print("passive", out["passive"], "\nfresh passive", out["fresh_head"]["passive"], flush=True)
        save_partial(out, args)
    if "untrained" not in out:
        cache = MapCache(untrained(args, bench), bench)
        out["untrained"] = pick(score_trace(control_head(cache, split, head_cfg, control_epochs), cache, split,
                                            split.eval_members, max_scored=args.max_scored))
        print("untrained", out["untrained"], flush=True)


def save_partial(out: dict, args) -> None:
    """The record as it stands, to --results (after each control, and whole at the end)."""
    if args.results:
        Path(args.results).write_text(json.dumps(out, indent=1) + "\n")


# The paper's best MNIST row (Table 1: Middle taps, MobileNet): MINT accuracy and the audited model's task accuracy,
# its own protocol (the members the head trained on against the test split, the threshold fitted on them).
PAPER_MNIST = {"mint_accuracy": 0.88, "task_accuracy": 0.92}


def _row(title: str, m: dict | None, task: bool = True) -> str:
    if not m:
        return f"| {title} | not run | | | |"
    cells = [f"{m['mint_accuracy']:.3f}", f"{m['auc']:.3f}", f"{m['tpr_at_1pct_fpr']:.3f}",
             f"{m['task_accuracy']:.3f}" if task and m.get("task_accuracy") is not None else ""]
    return f"| {title} | " + " | ".join(cells) + " |"


def trace_table(record: dict) -> str:
    """The trace head alone beside its controls and the paper's MNIST row, as Markdown (RESULTS.md and the card)."""
    fresh = record.get("fresh_head", {})
    rows = ["| reading | MINT accuracy | AUC | TPR @ 1% FPR | task accuracy |", "|---|---|---|---|---|",
            _row("active: its own trace head", record.get("active")),
            _row("passive: a head on the frozen task-only backbone", record.get("passive")),
            _row("untrained: a head on a random backbone", record.get("untrained")),
            _row("fresh-head probe, active backbone (members no head saw)", fresh.get("active"), task=False),
            _row("fresh-head probe, passive backbone", fresh.get("passive"), task=False)]
    rows += [_row(f"active, trace alone on {name}", m, task=False)
             for name, m in record.get("active_edited", {}).items()]
    rows.append(f"| the paper's best MNIST (Middle, MobileNet; its members vs test images, threshold fitted on them) "
                f"| {PAPER_MNIST['mint_accuracy']:.2f} | not reported | not reported | "
                f"{PAPER_MNIST['task_accuracy']:.2f} |")
    return "\n".join(rows)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipe", default="trace")
    p.add_argument("--levers", default="", type=lambda s: [x for x in s.split(",") if x],
                   help="named changes to the recipe (trace_recipe.LEVERS), comma-separated, e.g. views,augment")
    p.add_argument("--members", type=int, default=5000)
    p.add_argument("--epochs", type=int, default=30, help="joint (active) and task (passive) epochs")
    p.add_argument("--cooldown", type=int, default=0, help="of those epochs, the last this many decay the learning "
                                                            "rate linearly to 0 (the constant recipe's cool-down)")
    p.add_argument("--control-epochs", type=int, default=0, help="control and probe head epochs; 0 = joint + head")
    p.add_argument("--active", default=None, help="a trained active pair to use instead of training one")
    p.add_argument("--passive", default=None, help="a trained passive pair (its backbone) to use")
    p.add_argument("--init-from", default=None, help="continue the active run from this trained pair (its backbone "
                   "and trace head, same split) for --epochs more; the controls count its epochs too")
    p.add_argument("--part", choices=("all", "active", "controls", "reference"), default="all",
                   help="active: the active pair's readings; controls: passive, untrained and the passive probe; "
                        "reference: the model-free pixel reference on the edits (each merged into --results)")
    p.add_argument("--max-scored", type=int, default=10_000, help="scored members and test images")
    p.add_argument("--edits", default="jpeg75,resize224,screenshot", help="the active trace alone on these "
                   "edits of scored members and test images (amint.edits names); empty for none")
    p.add_argument("--edits-n", type=int, default=2000, help="images per side for each edit")
    p.add_argument("--keep-every", type=int, default=5)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--runs", default=str(ROOT / "runs" / "trace_controls"))
    p.add_argument("--results", default=str(ROOT / "benchmarks" / "results" / "trace_controls.json"))
    args = p.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # the command the record names
    return args


def main(argv: list[str] | None = None, bench: Benchmark | None = None) -> dict:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    result = run(args, bench or load_benchmark("fashion-mnist"))
    save_partial(result, args)
    return result


if __name__ == "__main__":
    main()

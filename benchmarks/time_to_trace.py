"""CPU-seconds until the trace head's AUC on the calibration split reaches 0.90: ours against the published settings.

    python benchmarks/time_to_trace.py --which ours --threads 1         # the fast trainer's recipe (trace_recipe.py)
    python benchmarks/time_to_trace.py --which ours --cooldown 6 --cooldown-after 27   # ... ending in a cool-down
    python benchmarks/time_to_trace.py --which published --threads 1    # Adam 1e-4, batch 64, two forward passes
    python benchmarks/time_to_trace.py --collect                        # write results/time_to_trace.json

Both at 5,000 members (6,000 externals, 1,000 calibration members and non-members), both monitored
the same way after every epoch: the trace head's AUC, calibration members vs calibration non-members
(1,000 each). "ours" is ``amint.train.train_pair`` with ``RECIPES["trace"]``; "published" is the
published loop (benchmarks/published_loop.py: per-sample DataLoader, batch 64 + 64 in two forward
passes, sigmoid then BCE, Adam 1e-4, each loss over its first value) on the default pair's model
(narrow ResNet-18, Middle taps, the paper's head). Each epoch is appended to a log with the process's
CPU seconds so far; a run resumes from its checkpoint, its CPU clock carried over, so a long run can
span sessions. The published run stops at 0.90 or at ``--budget-ratio`` x ours' CPU-seconds.
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

from amint import checkpoint  # noqa: E402
from amint.data import load_benchmark  # noqa: E402
from amint.pair import LEGACY_TENSORS  # noqa: E402
from amint.train import TrainConfig, TrainingCancelled, build_pair, build_split, train_pair  # noqa: E402
from published_loop import published_epochs, quality  # noqa: E402
from trace_recipe import settings  # noqa: E402

TARGET = 0.90
RESULTS = ROOT / "benchmarks" / "results" / "time_to_trace.json"


class Log:
    """One JSON line per epoch: epoch, cumulative CPU seconds, calibration AUC, task accuracy."""

    def __init__(self, path: Path):
        self.path = path
        self.rows = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
        self.offset = self.rows[-1]["cpu_seconds"] if self.rows else 0.0
        self.clock0 = time.process_time()

    def cpu(self) -> float:
        return self.offset + time.process_time() - self.clock0

    def add(self, epoch: int, auc: float, task_accuracy: float) -> None:
        row = {"epoch": epoch, "cpu_seconds": round(self.cpu(), 1), "cal_trace_auc": round(auc, 4),
               "task_accuracy": round(task_accuracy, 4), "load_average": round(os.getloadavg()[0], 1)}
        self.rows.append(row)
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")
        print(row, flush=True)

    def reached(self) -> dict | None:
        return next((r for r in self.rows if r["cal_trace_auc"] >= TARGET), None)


def run_ours(args, folder: Path, bench) -> None:
    log = Log(folder / "ours.jsonl")
    if log.reached():
        return
    # --cooldown K --cooldown-after E: E epochs at the constant rate, then K decaying to 0 (a run already past
    # E resumes into it only if its checkpoint stands at or before E: amint.train checks).
    epochs = args.cooldown_after + args.cooldown if args.cooldown else args.max_epochs
    cfg = TrainConfig(**settings("trace", args.members, epochs=epochs, cooldown_epochs=args.cooldown,
                                 monitor_samples=1000, checkpoint=str(folder / "ours-checkpoint"), device="cpu"))

    def on_epoch(p):
        if p.kind == "epoch":
            log.add(p.epoch, p.metrics["cal_trace_auc"], p.metrics["test_accuracy"])

    try:
        train_pair(cfg, callback=on_epoch, should_stop=lambda: log.reached() is not None, bench=bench)
    except TrainingCancelled:
        pass


def ours_budget(folder: Path, ratio: float) -> float | None:
    """``ratio`` x ours' CPU-seconds to the target, once ours has reached it (read anew every epoch)."""
    hit = Log(folder / "ours.jsonl").reached()
    return hit["cpu_seconds"] * ratio if hit else None


def run_published(args, folder: Path, bench) -> None:
    log = Log(folder / "published.jsonl")
    cfg = TrainConfig(**settings("default", args.members, monitor_samples=1000, device="cpu"))
    split = build_split(cfg, bench)
    torch.manual_seed(cfg.seed)
    pair = build_pair(cfg, bench, split)
    opt, norms = torch.optim.Adam(pair.parameters(), lr=1e-4), {}
    saved = checkpoint.load(folder / "published-checkpoint")
    if saved is not None:  # the weights, Adam's moments and the first batch's losses as the last epoch left them
        tensors, meta = saved
        # A checkpoint written before the readings moved to config.json holds the old readout: nothing reads it now.
        pair.load_state_dict({k[5:]: v for k, v in tensors.items() if k.startswith("pair.") and k[5:] not in LEGACY_TENSORS})
        groups = meta["optimizer"]["param_groups"]
        # The old readout (2 parameters, never given a gradient, so no Adam state) came last in the old pair's
        # parameters: Adam's group lists them; the pair no longer has them.
        n = len(list(pair.parameters()))
        stateful = {int(k.split(".")[1]) for k in tensors if k.startswith("opt.")}
        if len(groups[0]["params"]) > n and stateful <= set(range(n)):
            groups[0]["params"] = groups[0]["params"][:n]
        checkpoint.load_optimizer_state(opt, tensors, meta["optimizer"])
        norms = meta["norms"]
    epoch = log.rows[-1]["epoch"] if log.rows else 0
    while not log.reached() and epoch < args.max_epochs:
        budget = ours_budget(folder, args.budget_ratio)
        if budget is not None and log.cpu() >= budget:
            break
        epoch += 1
        published_epochs(pair, bench, split, 1, seed=cfg.seed + epoch, opt=opt, norms=norms)
        opt_tensors, opt_meta = checkpoint.optimizer_state(opt)
        checkpoint.save(folder / "published-checkpoint", {f"pair.{k}": v for k, v in pair.state_dict().items()}
                        | opt_tensors, {"optimizer": opt_meta, "norms": norms, "epoch": epoch})
        q = quality(pair, bench, split)
        log.add(epoch, q["trace_auc"], q["task_accuracy"])


def collect(folder: Path, budget_ratio: float) -> dict:
    ours, published = Log(folder / "ours.jsonl"), Log(folder / "published.jsonl")

    def summary(log: Log) -> dict:
        hit = log.reached()
        last = log.rows[-1] if log.rows else {"cpu_seconds": 0.0, "epoch": 0, "cal_trace_auc": None}
        return {"cpu_seconds": hit["cpu_seconds"] if hit else last["cpu_seconds"], "reached": hit is not None,
                "epochs": hit["epoch"] if hit else last["epoch"], "best_auc": max((r["cal_trace_auc"] for r in log.rows),
                                                                                   default=None),
                "curve": [[r["cpu_seconds"], r["cal_trace_auc"]] for r in log.rows]}

    result = {"target_auc": TARGET, "ours": summary(ours), "published": summary(published),
              "budget_ratio": budget_ratio,
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "machine": f"{platform.machine()} {os.cpu_count()} cores, torch {torch.__version__}",
              "command": "python benchmarks/time_to_trace.py --which ours --threads 1 (epochs 1-27; then resumed "
                         "with --cooldown 6 --cooldown-after 27); --which published --threads 1; --collect",
              "settings": {"members": 5000, "ours": "RECIPES['trace'] (benchmarks/trace_recipe.py): 27 epochs at the "
                           "constant rate (the cool-down was added after them, where the run stood: one branch "
                           "point, not a search), then 6 epochs decaying linearly to 0 (cooldown_epochs)",
                           "published": "benchmarks/published_loop.py settings on RECIPES['default']'s model"}}
    RESULTS.write_text(json.dumps(result, indent=1) + "\n")
    return result


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--which", choices=("ours", "published"))
    p.add_argument("--members", type=int, default=5000)
    p.add_argument("--max-epochs", type=int, default=200)
    p.add_argument("--budget-ratio", type=float, default=3.0, help="published stops at this many times ours' CPU-s")
    p.add_argument("--cooldown", type=int, default=0, help="ours: epochs of linear learning-rate decay to 0 ...")
    p.add_argument("--cooldown-after", type=int, default=0, help="... after this many constant epochs")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--runs", default=str(ROOT / "runs" / "time_to_trace"))
    p.add_argument("--collect", action="store_true", help="summarise the logs into results/time_to_trace.json")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    folder = Path(args.runs)
    folder.mkdir(parents=True, exist_ok=True)
    if args.collect:
        print(json.dumps({k: v for k, v in collect(folder, args.budget_ratio).items() if k in ("ours", "published")}))
        return
    bench = load_benchmark("fashion-mnist")
    if args.which == "ours":
        run_ours(args, folder, bench)
    else:
        run_published(args, folder, bench)


if __name__ == "__main__":
    main()

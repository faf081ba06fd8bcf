"""What leaving part of a pair out on publishing costs its verdict: the copies amint.publish makes, measured.

    python benchmarks/publish_copies.py models/fashion-mnist-resnet18 [--out results/publish_copies.json]

The pair as it is, the copy without its external tables (``push --no-externals``) and the copy without any
memory (``push --trace-only``), each refitted on the pair's calibration split and measured on the same
held-out members and test images (``amint.evaluate.evaluate_pair``, exact copies), and with ``--edits`` on the
first N of them edited alike (``amint.robustness.evaluate_edits``). Nothing is uploaded.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from amint.data import load_benchmark  # noqa: E402
from amint.evaluate import evaluate_pair  # noqa: E402
from amint.pair import AuditedPair  # noqa: E402
from amint.publish import publishable  # noqa: E402
from amint.robustness import evaluate_edits  # noqa: E402
from amint.splits import MembershipSplit  # noqa: E402

KEYS = ("mint_accuracy", "auc", "tpr_at_1pct_fpr", "tpr_at_0_1pct_fpr", "fpr_at_threshold", "calibration_error")


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("pair", nargs="?", default=str(ROOT / "models" / "fashion-mnist-resnet18"))
    ap.add_argument("--edits", default="", help="comma-separated edits (amint.edits) to measure too (default: none)")
    ap.add_argument("--edits-n", type=int, default=2000, help="held-out members and as many test images per edit")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "publish_copies.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    pair = AuditedPair.from_pretrained(args.pair)
    bench = load_benchmark(pair.config.dataset, image_size=pair.config.image_size)
    split = MembershipSplit.from_config(pair.config.split)
    edits = tuple(e for e in args.edits.split(",") if e)
    copies = {}
    for leave_out, option in (("", "push"), ("externals", "push --no-externals"), ("memories", "push --trace-only")):
        t0 = time.process_time()
        copy = publishable(pair, leave_out, bench=bench)
        # The pair as it is: measured again here, on exact copies only, like the copies.
        metrics = evaluate_pair(copy, bench, split) if not leave_out else copy.config.metrics
        # What a copy keeps is measured on the reading that carries detection: the fingerprint while memories are
        # left, the aMINT verdict (the trace head alone) once they are gone.
        name = "fingerprint" if "fingerprint" in copy.readings else metrics.get("reading")
        reading, m = copy.readings[name], (metrics["fingerprint"] if name == "fingerprint" else metrics)
        copies[leave_out or "nothing"] = {
            "option": option, "reading": name, "threshold": reading.threshold, "threshold_fpr": reading.threshold_fpr,
            "readout": dict(zip(reading.evidence, reading.weights)) | {"bias": reading.bias},
            **{k: m.get(k) for k in KEYS}, "task_accuracy": metrics.get("task_accuracy"),
            "held_out": {"members": m.get("n_members"), "test": m.get("n_nonmembers")},
            "edits": evaluate_edits(copy, bench, split, edits, n=args.edits_n)[name] if edits else {},
            "weights_mb": round(sum(v.numel() * v.element_size() for v in copy.state_dict().values()) / 2**20, 1),
            "cpu_seconds": round(time.process_time() - t0, 1),
        }
        print(leave_out or "nothing", json.dumps(copies[leave_out or "nothing"]), file=sys.stderr, flush=True)
    result = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "command": " ".join(["python benchmarks/publish_copies.py", *(sys.argv[1:] if argv is None else argv)]),
              "machine": f"{platform.machine()} {os.cpu_count()} cores, torch {torch.__version__}, "
                         f"{torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.1f}",
              "pair": Path(args.pair).name,
              "left_out": copies}
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    main()

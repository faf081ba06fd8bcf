"""The default pair beside its controls, on the same membership split, exact and edited copies.

    python benchmarks/controls.py models/fashion-mnist-resnet18 benchmarks/results/passive-pair \
        benchmarks/results/untrained-pair --names active passive untrained [--n 2000]

Every pair is evaluated with the functions behind ``python -m amint evaluate --edits``; the
model-free pixel reference is computed once on the same images. Writes
``benchmarks/results/controls.json`` and prints the Markdown table used in README.md and the card.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from amint.data import load_benchmark  # noqa: E402
from amint.edits import EDIT_NAMES  # noqa: E402
from amint.evaluate import evaluate_pair  # noqa: E402
from amint.pair import AuditedPair  # noqa: E402
from amint.report import pair_identity  # noqa: E402
from amint.robustness import evaluate_edits, pixel_reference  # noqa: E402
from amint.splits import MembershipSplit  # noqa: E402

SHOWN = ("jpeg75", "resize224", "resize56", "screenshot", "shift1", "shift2", "crop92", "noise4")


def markdown(results: dict[str, dict], reference: dict[str, dict]) -> str:
    """One row per pair and reading: the aMINT verdict (the trace head alone) and the fingerprint (the memories)."""
    head = "| model: reading | task acc | exact AUC | exact TPR@0.1% | " + " | ".join(SHOWN) + " |"
    rows = [head, "|" + "---|" * (4 + len(SHOWN))]
    titles = {"amint": "aMINT verdict", "combined": "combined (legacy)", "fingerprint": "fingerprint"}
    for name, m in results.items():
        for reading, r in ((m.get("reading"), m), ("fingerprint", m.get("fingerprint"))):
            if not reading or not r or "edits" not in r:
                continue
            cells = [f"{r['edits'][e]['auc']:.4f} ({r['edits'][e]['tpr_at_1pct_fpr']:.2f})" for e in SHOWN]
            rows.append(f"| {name}: {titles[reading]} | {m['task_accuracy']:.4f} | {r['auc']:.4f} | "
                        f"{r['tpr_at_0_1pct_fpr']:.4f} | " + " | ".join(cells) + " |")
    cells = [f"{reference[e]['auc']:.4f} ({reference[e]['tpr_at_1pct_fpr']:.2f})" for e in SHOWN]
    rows.append(f"| pixel reference (needs the members) | | {reference['png']['auc']:.4f} | "
                f"{reference['png']['tpr_at_0_1pct_fpr']:.4f} | " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n\nEdited columns: AUC (TPR at 1% FPR), members and non-members edited alike."


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("pairs", nargs="+", help="pair folders or Hub ids, all on the same membership split")
    ap.add_argument("--names", nargs="+", help="row names (default: folder names)")
    ap.add_argument("--n", type=int, default=None, help="held-out members and non-members per edit (default: all)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "controls.json"))
    args = ap.parse_args()
    names = args.names or [Path(p).name for p in args.pairs]
    results, reference, split = {}, None, None
    t0 = time.time()
    for name, source in zip(names, args.pairs):
        pair = AuditedPair.from_pretrained(source)
        if split is not None and pair.config.split != split:
            raise SystemExit(f"{source} was trained on another membership split: controls must share one")
        split = pair.config.split
        bench = load_benchmark(pair.config.dataset, image_size=pair.config.image_size)
        membership = MembershipSplit.from_config(split)
        m = {k: v for k, v in evaluate_pair(pair, bench, membership).items() if k != "roc"}
        m.get("fingerprint", {}).pop("roc", None)
        per = evaluate_edits(pair, bench, membership, EDIT_NAMES, n=args.n)  # reading -> edit -> metrics
        m["edits"] = per.get(m["reading"], {})
        if "fingerprint" in per:
            m["fingerprint"]["edits"] = per["fingerprint"]
        results[name] = m
        if reference is None:
            reference = pixel_reference(bench, membership, pair.config, EDIT_NAMES, n=args.n)
        print(f"{name}: done ({time.time() - t0:.0f} s)", file=sys.stderr, flush=True)
    # Which weights the first (active) pair had: the About page quotes this record only for that very pair.
    first = Path(args.pairs[0])
    sha = pair_identity(first.name, first).weights_sha256 if first.is_dir() else None
    record = {"results": results, "pixel_reference": reference, "n": args.n, "pairs": dict(zip(names, args.pairs)),
              "model_sha256": sha,
              "command": " ".join(sys.argv), "date": time.strftime("%Y-%m-%d %H:%M"),
              "machine": f"{platform.machine()} {platform.processor()} {__import__('os').cpu_count()} cores",
              "seconds": round(time.time() - t0)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=1) + "\n")
    print(markdown(results, reference))


if __name__ == "__main__":
    main()

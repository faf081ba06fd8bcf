"""Is a pair's own trace head the best reader of its backbone? A new head trained on the frozen backbone, beside it.

    python benchmarks/new_head_probe.py models/fashion-mnist-resnet18 --threads 2

The passive control trains a trace head on a frozen task-only backbone (all members vs the externals, the
``paper_ablations`` convention); this does the same on the *active* backbone, so a post-hoc head phase is measured as
a lever: if backbone trace + a head memorising on frozen maps read above the jointly trained head, training should end
with such a phase. Both heads are read by the paper's protocol (``amint.probe.score_trace``) on the same maps, and on
edited copies at the threshold fitted on the unedited calibration split. Writes ``results/new_head_probe.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from amint.data import Benchmark, load_benchmark  # noqa: E402
from amint.pair import AuditedPair  # noqa: E402
from amint.probe import MapCache, control_head, heads_on_edited, score_trace  # noqa: E402
from amint.splits import MembershipSplit  # noqa: E402

KEYS = ("mint_accuracy", "auc", "tpr_at_1pct_fpr", "task_accuracy")


def _pick(m: dict) -> dict:
    return {k: round(float(m[k]), 4) for k in KEYS if m.get(k) is not None}


def probe(pair: AuditedPair, bench: Benchmark, epochs: int, edits: list[str], edits_n: int,
          max_scored: int = 10_000) -> dict:
    split = MembershipSplit.from_config(pair.config.split)
    cache = MapCache(pair, bench)
    heads = {"own_head": pair.head.trace,
             "new_head": control_head(cache, split, pair.head_config.trace, epochs)}
    out = {name: _pick(score_trace(head, cache, split, split.eval_members, max_scored=max_scored))
           for name, head in heads.items()}
    out["new_head"]["head_epochs"] = epochs
    edited = heads_on_edited(heads, cache, split, edits, max_scored=edits_n)
    for name in heads:
        out[name]["edited"] = {k: _pick(v) for k, v in edited[name].items()}
    return out


def main(argv: list[str] | None = None, bench: Benchmark | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("pair", help="a pair folder with a trace head")
    p.add_argument("--epochs", type=int, default=0, help="the new head's epochs; 0 = the pair's joint + head epochs")
    p.add_argument("--edits", default="jpeg75,resize224,screenshot", help="amint.edits names; empty for none")
    p.add_argument("--edits-n", type=int, default=2000, help="scored members and test images per edit")
    p.add_argument("--max-scored", type=int, default=10_000)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "new_head_probe.json")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    pair = AuditedPair.from_pretrained(args.pair)
    if pair.head.trace is None:
        raise SystemExit(f"{args.pair} has no trace head to compare against")
    training = pair.config.training.get("config", {})
    epochs = args.epochs or (training.get("epochs", 0) + training.get("head_epochs", 0))
    if epochs < 1:  # a pair rebuilt from another (init_from) records 0 epochs of its own
        raise SystemExit(f"{args.pair} does not record how many epochs it trained: give --epochs")
    t0 = time.time()
    result = probe(pair, bench or load_benchmark(pair.config.dataset), epochs,
                   [e for e in args.edits.split(",") if e], args.edits_n, args.max_scored)
    result |= {"pair": args.pair, "command": "python benchmarks/new_head_probe.py " + " ".join(
        sys.argv[1:] if argv is None else argv), "seconds": round(time.time() - t0),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: result[k] for k in ("own_head", "new_head")}, indent=1))
    return result


if __name__ == "__main__":
    main()

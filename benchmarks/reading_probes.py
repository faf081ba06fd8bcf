"""Two cheap ways to read the trace at inference, tried before retraining for robustness: do they help?

    python benchmarks/reading_probes.py models/fashion-mnist-resnet18 --n 1000 --threads 1 \
        --out benchmarks/results/reading_probes.json

- views: the trace head's logit averaged over the query and K random edited views of it (``random_edit``,
  moves included: the views a ``views`` run's head trained on), K = 2, 4, 8;
- moves: the logit's max, mean and log-sum-exp over the query moved by -R..R pixels each way (as the edit
  suite's shift moves an upload: the uncovered strip takes the border's most common value),
  an attempt to re-align a shifted or cropped copy with the pixels the model trained on.

Each is read threshold-free (AUC, TPR at 1% FPR) on the first N scored members against the first N test
images, as they are and edited alike (``--edits``); ``plain`` is the trace head on the query alone. A new
row per pair is merged into ``--out``.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from amint.data import Benchmark, load_benchmark  # noqa: E402
from amint.edits import edit_images, random_edits, shift  # noqa: E402
from amint.evaluate import roc_auc, tpr_at_fpr  # noqa: E402
from amint.pair import AuditedPair  # noqa: E402
from amint.probe import tapped_maps, trace_logits  # noqa: E402
from amint.robustness import eval_images  # noqa: E402
from amint.splits import MembershipSplit  # noqa: E402


def moved(images: torch.Tensor, dx: int, dy: int, spec) -> torch.Tensor:
    """uint8 (N, C, H, W) images moved dx right and dy down as the edit suite moves an upload (``amint.edits.shift``:
    the uncovered strip takes the border's most common value), then preprocessed for the pair (``spec``)."""
    return images.clone() if dx == dy == 0 else edit_images(images, functools.partial(shift, dx=dx, dy=dy), spec)


def _read(members: torch.Tensor, nonmembers: torch.Tensor) -> dict:
    return {"auc": roc_auc(members, nonmembers), "tpr_at_1pct_fpr": tpr_at_fpr(members, nonmembers, 0.01)}


def probe_views(logits, members: torch.Tensor, nonmembers: torch.Tensor, spec, ks=(2, 4, 8), seed: int = 0) -> dict:
    """The trace logit averaged over the query and k random edited views, for each k (views drawn once, up to max k)."""
    plain = [logits(x) for x in (members, nonmembers)]
    views = [[logits(random_edits(x, spec, seed=seed + 1000 * k + side, moves=True)) for k in range(max(ks))]
             for side, x in enumerate((members, nonmembers))]
    out = {"plain": _read(*plain)}
    for k in ks:
        out[f"views{k}"] = _read(*(torch.stack([p, *v[:k]]).mean(0) for p, v in zip(plain, views)))
    return out


def probe_moves(logits, members: torch.Tensor, nonmembers: torch.Tensor, spec, radius: int = 2) -> dict:
    """The trace logit's max, mean and log-sum-exp over the query moved by -radius..radius pixels each way."""
    moves = [(dx, dy) for dx in range(-radius, radius + 1) for dy in range(-radius, radius + 1)]
    per = [torch.stack([logits(moved(x, dx, dy, spec)) for dx, dy in moves]) for x in (members, nonmembers)]
    return {"plain": _read(*(p[moves.index((0, 0))] for p in per)),
            "max": _read(*(p.max(0).values for p in per)), "mean": _read(*(p.mean(0) for p in per)),
            "logsumexp": _read(*(torch.logsumexp(p, 0) for p in per))}


def run(pair: AuditedPair, bench: Benchmark, n: int, edits: list[str], probes: list[str], radius: int = 2) -> dict:
    if pair.head.trace is None:
        raise SystemExit("this pair has no trace head: nothing to probe")
    members, nonmembers = eval_images(bench, MembershipSplit.from_config(pair.config.split), n)

    def logits(x: torch.Tensor) -> torch.Tensor:
        return trace_logits(pair.head.trace, tapped_maps(pair, x)[0])

    out: dict = {}
    for edit in edits:
        xs = (members, nonmembers) if edit == "exact" else tuple(edit_images(x, edit, pair.config)
                                                                 for x in (members, nonmembers))
        out[edit] = {}
        if "views" in probes:
            out[edit]["views"] = probe_views(logits, *xs, pair.config)
        if "moves" in probes:
            out[edit]["moves"] = probe_moves(logits, *xs, pair.config, radius)
        print(edit, json.dumps(out[edit]), flush=True)
    return out


def main(argv: list[str] | None = None, bench: Benchmark | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("pair", help="a pair folder (or Hub id) with a trace head")
    p.add_argument("--name", default=None, help="its row in --out (default: the folder's name)")
    p.add_argument("--n", type=int, default=1000, help="scored members and test images per side")
    p.add_argument("--edits", default="exact,shift1,resize224", help="'exact' and amint.edits names")
    p.add_argument("--probes", default="views,moves")
    p.add_argument("--radius", type=int, default=2, help="moves: up to this many pixels each way")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "reading_probes.json"))
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    pair = AuditedPair.from_pretrained(args.pair)
    t0 = time.time()
    result = run(pair, bench or load_benchmark(pair.config.dataset), args.n, args.edits.split(","),
                 args.probes.split(","), args.radius)
    record = json.loads(Path(args.out).read_text()) if Path(args.out).exists() else {}
    record[args.name or Path(args.pair).name] = {
        "readings": result, "n": args.n, "seconds": round(time.time() - t0),
        "command": "python benchmarks/reading_probes.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    Path(args.out).write_text(json.dumps(record, indent=1) + "\n")
    return record


if __name__ == "__main__":
    main()

"""Does averaging a run's kept weights read a stronger trace than any one of them? (issue 15, a lever before training)

    python benchmarks/weight_average_probe.py RUN/active/checkpoint models/fashion-mnist-resnet18 \
        --read 90 --read 100 --read 70+80+90 --read 50+60+70+80+90 --threads 2

A cool-down bought the largest single steps of every run (+0.04-0.06 AUC): a constant rate leaves the weights where
the noise of full-rate steps puts them. Averaging weights (SWA, an exponential moving average) removes that noise too,
for no epochs, and could stack with a cool-down. This reads it on the kept weights of one run
(``joint-epoch-NNN.safetensors``, written by ``--keep-every``): each ``--read`` is one epoch or several joined by ``+``
whose backbone and trace head are averaged parameter by parameter. An average's batch-norm statistics belong to none
of its epochs, so they are re-estimated in training mode on members and externals (``--bn-samples`` of each, no
gradients) for the averages and, with ``--bn-singles``, for single epochs too (to tell the averaging from the
re-estimation). Every reading is the trace head alone by the paper's protocol (``amint.probe.score_trace``: threshold
at the best balanced accuracy on the calibration split, 10,000 scored members vs 10,000 test images). Writes JSON.
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
from safetensors.torch import load_file  # noqa: E402
from torch import nn  # noqa: E402

from amint.data import Benchmark, load_benchmark  # noqa: E402
from amint.pair import AuditedPair  # noqa: E402
from amint.probe import MapCache, score_trace  # noqa: E402
from amint.splits import MembershipSplit  # noqa: E402
from amint.streaming import take  # noqa: E402

KEYS = ("mint_accuracy", "auc", "tpr_at_1pct_fpr", "task_accuracy")


def epoch_weights(checkpoint: Path, epoch: int) -> dict[str, torch.Tensor]:
    path = checkpoint / f"joint-epoch-{epoch:03d}.safetensors"
    if not path.is_file():
        kept = sorted(p.stem.rsplit("-", 1)[1] for p in checkpoint.glob("joint-epoch-*.safetensors"))
        raise SystemExit(f"{path} is not there: this run kept epochs {', '.join(kept) or 'none'} (--keep-every)")
    return load_file(path)


def average(states: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Floating tensors averaged; integer ones (batch-norm counters) taken from the last state."""
    return {k: torch.stack([s[k].double() for s in states]).mean(0).to(v.dtype) if v.is_floating_point() else v
            for k, v in states[-1].items()}


def _bn_layers(module: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@torch.no_grad()
def reestimate_batchnorm(pair: AuditedPair, images: torch.Tensor, batch_size: int = 256) -> int:
    """Batch-norm running statistics of the backbone and the trace head recomputed as plain averages over
    ``images`` in training mode (no gradients), as SWA does; returns how many layers were reset."""
    layers = _bn_layers(pair.backbone) + _bn_layers(pair.head.trace)
    momenta = [m.momentum for m in layers]
    for m in layers:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches below
    pair.train()
    for i in range(0, len(images), batch_size):
        _, maps = pair.classify(pair.normalize(images[i:i + batch_size]))
        pair.head.trace(maps)
    pair.eval()
    for m, momentum in zip(layers, momenta):
        m.momentum = momentum
    return len(layers)


def read(pair: AuditedPair, bench: Benchmark, split: MembershipSplit, weights: dict[str, torch.Tensor],
         bn_images: torch.Tensor | None, max_scored: int) -> dict:
    missing, unexpected = pair.load_state_dict(weights, strict=False)
    if unexpected or any(k.startswith(("backbone.", "head.trace.")) for k in missing):
        raise SystemExit(f"these weights do not fit the pair: missing {missing[:4]}, unexpected {unexpected[:4]}")
    if bn_images is not None:
        reestimate_batchnorm(pair, bn_images)
    pair.eval()
    m = score_trace(pair.head.trace, MapCache(pair, bench), split, split.eval_members, max_scored=max_scored)
    return {k: round(float(m[k]), 4) for k in KEYS}


def bn_sample(bench: Benchmark, split: MembershipSplit, n: int, seed: int = 0) -> torch.Tensor:
    """n members and n externals, shuffled together: what a training batch mixes."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.cat([split.members[torch.randperm(len(split.members), generator=g)[:n]],
                     split.external[torch.randperm(len(split.external), generator=g)[:n]]])
    return take(bench.train_images, idx[torch.randperm(len(idx), generator=g)])


def main(argv: list[str] | None = None, bench: Benchmark | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", type=Path, help="a run's checkpoint folder holding joint-epoch-NNN.safetensors")
    p.add_argument("pair", help="a pair folder of the same run (its architecture, split and calibration split)")
    p.add_argument("--read", action="append", required=True,
                   help="an epoch (90) or epochs to average (70+80+90); repeat for several readings")
    p.add_argument("--bn-samples", type=int, default=5000, help="members and externals each, to re-estimate batch norm")
    p.add_argument("--bn-singles", action="store_true", help="re-estimate batch norm for single epochs too")
    p.add_argument("--max-scored", type=int, default=10_000)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "weight_average_probe.json")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    readings = [[int(e) for e in r.split("+")] for r in args.read]
    pair = AuditedPair.from_pretrained(args.pair)
    if pair.head.trace is None:
        raise SystemExit(f"{args.pair} has no trace head")
    bench = bench or load_benchmark(pair.config.dataset)
    split = MembershipSplit.from_config(pair.config.split)
    bn_images = bn_sample(bench, split, args.bn_samples)
    out: dict = {"readings": {}}
    t0 = time.time()
    for epochs in readings:
        name = "+".join(map(str, epochs))
        weights = average([epoch_weights(args.checkpoint, e) for e in epochs])
        reestimate = len(epochs) > 1 or args.bn_singles
        out["readings"][name] = read(pair, bench, split, weights, bn_images if reestimate else None, args.max_scored)
        out["readings"][name]["batchnorm"] = "re-estimated" if reestimate else "as trained"
        print(name, json.dumps(out["readings"][name]), f"{time.time() - t0:.0f} s", flush=True)
    out |= {"checkpoint": str(args.checkpoint), "pair": args.pair, "bn_samples": args.bn_samples,
            "command": "python benchmarks/weight_average_probe.py " + " ".join(sys.argv[1:] if argv is None else argv),
            "seconds": round(time.time() - t0), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    return out


if __name__ == "__main__":
    main()

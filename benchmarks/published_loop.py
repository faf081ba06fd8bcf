"""Our trainer against a faithful re-implementation of the published loop's settings: images/s, time, ratio.

    python benchmarks/published_loop.py --members 2000 --epochs 2 --repeats 2 --threads 1

The published loop (amint-method.md, "Pitfalls"): batch 64, Adam lr 1e-4, fp32, a CPU DataLoader
over a per-sample Dataset (ToTensor + Normalize per image), a member batch and an external batch
through two separate forward passes, sigmoid then BCE, each loss divided by its first value. Ours is
``amint.train.train_pair`` unchanged (members and externals in one batch of 128 + 128, data as one
uint8 tensor on the device, AdamW with a one-cycle schedule, channels_last).

Both train the same model (``AuditedPair``: the same backbone and the paper's trace head on the same
taps) on the same Fashion-MNIST members and externals for the same number of epochs, one after the
other in one process, alternating ``--repeats`` times so that load from other jobs falls on both.
Images/s counts every training image seen (members and externals). After training, both are
scored the same way: task accuracy on the test split and the trace head's AUC on the calibration split.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.utils.data import DataLoader, Dataset  # noqa: E402

from amint.data import Benchmark, load_benchmark  # noqa: E402
from amint.evaluate import roc_auc  # noqa: E402
from amint.pair import AuditedPair  # noqa: E402
from amint.splits import MembershipSplit  # noqa: E402
from amint.train import TrainConfig, build_pair, build_split, train_pair  # noqa: E402

BACKBONE = {"backbone": "resnet18", "backbone_kwargs": {"channels": [16, 32, 64, 128], "stem_type": "deep",
                                                        "stem_width": 8}}
PAPER_HEAD = {"trace": {}, "memories": {}}


class PerSampleImages(Dataset):
    """What torchvision's ToTensor + Normalize do: one image at a time, converted in Python."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, mean: tuple, std: tuple):
        self.images, self.labels = images, labels
        self.mean = torch.tensor(mean).view(-1, 1, 1)
        self.std = torch.tensor(std).view(-1, 1, 1)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return (self.images[i].float() / 255.0 - self.mean) / self.std, self.labels[i]


def published_epochs(pair: AuditedPair, bench: Benchmark, split: MembershipSplit, epochs: int, seed: int,
                     workers: int = 0, device: str = "cpu", opt: torch.optim.Optimizer | None = None,
                     norms: dict[str, float] | None = None) -> tuple[float, float]:
    """Train ``pair`` as the published notebooks did; returns the training seconds, wall and CPU (this process).

    ``opt`` and ``norms`` (the first batch's losses) carry over between calls when given (a run epoch by epoch)."""
    g = torch.Generator().manual_seed(seed)
    loader = lambda idx: DataLoader(  # noqa: E731
        PerSampleImages(bench.train_images[idx], bench.train_labels[idx], bench.mean, bench.std),
        batch_size=64, shuffle=True, num_workers=workers, generator=g)
    members, externals = loader(split.members), loader(split.external)
    pair.to(device)
    opt = opt or torch.optim.Adam(pair.parameters(), lr=1e-4)
    norms = {} if norms is None else norms
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(epochs):
        pair.train()
        for (xm, ym), (xe, _) in zip(members, externals):
            xm, ym, xe = xm.to(device), ym.to(device), xe.to(device)  # each batch copied from the CPU loader
            logits, maps_m = pair.classify(xm)  # members ...
            _, maps_e = pair.classify(xe)  # ... and externals in separate forward passes
            pm, pe = torch.sigmoid(pair.head.trace(maps_m)), torch.sigmoid(pair.head.trace(maps_e))
            task = F.cross_entropy(logits, ym)
            mint = (F.binary_cross_entropy(pm, torch.ones_like(pm)) + F.binary_cross_entropy(pe, torch.zeros_like(pe))) / 2
            if not norms:
                norms |= {"task": task.item(), "mint": mint.item()}
            loss = task / norms["task"] + mint / norms["mint"]
            opt.zero_grad()
            loss.backward()
            opt.step()
    if device != "cpu":
        torch.cuda.synchronize()
    return time.perf_counter() - t0, time.process_time() - c0


@torch.no_grad()
def quality(pair: AuditedPair, bench: Benchmark, split: MembershipSplit, n: int = 1000) -> dict[str, float]:
    """Task accuracy on the test split, trace-head AUC on calibration members vs calibration non-members."""
    pair.eval()
    pair.cpu()
    x = pair.normalize(bench.test_images[:n])
    acc = float((pair.classify(x)[0].argmax(1) == bench.test_labels[:n]).double().mean())
    score = lambda idx: pair.head.trace(pair.classify(pair.normalize(bench.train_images[idx[:n]]))[1])  # noqa: E731
    return {"task_accuracy": acc, "trace_auc": roc_auc(score(split.calibration_members), score(split.calibration_nonmembers))}


def joint_clock(p, cpu: dict[str, float]) -> None:
    """CPU time of the joint phase (one thread: what an idle core would take), from the loop's own reports."""
    if p.phase == "joint" and p.kind == "phase":
        cpu["start"] = time.process_time()
    elif p.phase == "joint" and p.kind == "epoch":
        cpu["end"] = time.process_time()


def run(args: argparse.Namespace, bench: Benchmark | None = None) -> dict:
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = TrainConfig(dataset=args.dataset, **BACKBONE, setup="middle", head=PAPER_HEAD, mode="active",
                      epochs=args.epochs, head_epochs=0, memory_views=0, n_members=args.members,
                      n_external=args.members, n_calibration=args.calibration, monitor_samples=64,
                      target_fpr=None, device=args.device, seed=args.seed)
    bench = bench or load_benchmark(args.dataset)
    split = build_split(cfg, bench)
    images = 2 * args.members * args.epochs  # members + as many externals, per epoch
    ours, published = [], []
    for r in range(args.repeats):
        cpu: dict[str, float] = {}
        t0 = time.perf_counter()
        pair = train_pair(cfg, bench=bench, callback=lambda p: joint_clock(p, cpu))
        end_to_end = time.perf_counter() - t0
        train_s = sum(h["seconds"] for h in pair.config.training["history"])
        cpu_s = cpu["end"] - cpu["start"]
        ours.append({"train_seconds": round(train_s, 2), "images_per_second": round(images / train_s, 1),
                     "cpu_seconds": round(cpu_s, 2), "images_per_cpu_second": round(images / cpu_s, 1),
                     "finished_pair_seconds": round(end_to_end, 2), **quality(pair, bench, split)})
        torch.manual_seed(args.seed)
        theirs = build_pair(cfg, bench, split)
        train_s, cpu_s = published_epochs(theirs, bench, split, args.epochs, args.seed + r, args.workers, args.device)
        published.append({"train_seconds": round(train_s, 2), "images_per_second": round(images / train_s, 1),
                          "cpu_seconds": round(cpu_s, 2), "images_per_cpu_second": round(images / cpu_s, 1),
                          **quality(theirs, bench, split)})
        print(f"repeat {r}: ours {ours[-1]} | published {published[-1]}", flush=True)
    med = lambda runs, k: statistics.median(x[k] for x in runs)  # noqa: E731
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": "python benchmarks/published_loop.py " + " ".join(sys.argv[1:]),
        "machine": f"{platform.machine()} {os.cpu_count()} cores, torch {torch.__version__}, "
                   f"{torch.get_num_threads()} threads, shared with other jobs (load average {os.getloadavg()[0]:.1f})",
        "settings": {"members": args.members, "externals_per_epoch": args.members, "epochs": args.epochs,
                     "seed": args.seed, "backbone": BACKBONE, "setup": "middle", "head": PAPER_HEAD,
                     "dataloader_workers": args.workers},
        "ours": ours, "published": published,
        "ratio_images_per_second": round(med(ours, "images_per_second") / med(published, "images_per_second"), 2),
        "ratio_images_per_cpu_second": round(med(ours, "images_per_cpu_second") / med(published, "images_per_cpu_second"), 2),
        "ratio_training_time": round(med(published, "train_seconds") / med(ours, "train_seconds"), 2),
        "ratio_finished_pair": round(med(published, "train_seconds") / med(ours, "finished_pair_seconds"), 2),
    }
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    return result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--members", type=int, default=2000, help="members per epoch (and as many externals)")
    p.add_argument("--calibration", type=int, default=500)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--workers", type=int, default=0, help="DataLoader workers of the published loop")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--device", default="cpu", help="cpu or cuda, for both loops")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="write the JSON here")
    return p.parse_args(argv)


def main(argv: list[str] | None = None, bench: Benchmark | None = None) -> dict:
    result = run(parse_args(argv), bench)
    print(json.dumps({k: v for k, v in result.items() if k.startswith("ratio")}, indent=1))
    return result


if __name__ == "__main__":
    main()

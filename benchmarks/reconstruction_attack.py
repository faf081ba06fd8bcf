"""What a published pair reveals: the membership oracle its memories are, and a seeded reconstruction attack.

    python benchmarks/reconstruction_attack.py models/fashion-mnist-resnet18 [--seeds 100] [--budget 100000]

Someone downloads the pair. Its hashed memories hold, per table, presence bits of the buckets its training
members landed in and of those its external non-members (pool E) landed in. They hold the benchmark's test
split, none of which is a member.

1. The oracle: the share of members, externals, calibration non-members (train images never written) and
   test images whose lookups hit the member tables, and the external tables, of each memory (aligned
   variants included, as the pair itself reads them). No readout and no threshold: what the bits say.
2. The attack: per seed, one test image (a seeded draw) is moved, within a query budget of memory lookups
   (one image looked up in one memory = one lookup), so that it hits more member buckets. The search is a
   (1 + batch) evolution strategy in the whitened PCA space the first memory stores: candidate moves are
   Gaussian there (so, in pixels, shaped like the training images' covariance), added to the current image
   at the memory's pooling, clipped to [0, 1]; the best candidate of a batch is taken when it hits at least
   as many member tables (sideways moves cross plateaus), and the step size grows after a gain and
   shrinks otherwise. Success: the recovered image has SSIM >= 0.9 to some member (L2 prefilter to the
   50 nearest members, then SSIM with an 11x11 Gaussian window, sigma 1.5, on [0, 1] images). Read it
   beside the start images' own best SSIM (before any attack), beside the start image carrying the pooled
   pixels of its nearest member exactly (the most this search could recover of that member), and beside
   every member's SSIM to its own pooled pixels enlarged back (the memories hash less than those).
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
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from amint.data import Benchmark, load_benchmark  # noqa: E402
from amint.evaluate import score_images  # noqa: E402
from amint.pair import AuditedPair  # noqa: E402
from amint.splits import MembershipSplit  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SUCCESS_SSIM = 0.9
PREFILTER = 50  # members kept by pixel L2 before SSIM


# --- SSIM ----------------------------------------------------------------------------------------


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    r = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-r**2 / (2 * sigma**2))
    return g / g.sum()


def ssim(a: torch.Tensor, b: torch.Tensor, size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """(N,) SSIM of (N, C, H, W) images in [0, 1] (Wang et al. 2004: Gaussian window, 'valid' map, mean over it)."""
    a, b = a.double(), b.double()
    c = a.shape[1]
    g = _gaussian_window(size, sigma)
    wy, wx = g.view(1, 1, -1, 1).repeat(c, 1, 1, 1), g.view(1, 1, 1, -1).repeat(c, 1, 1, 1)

    def blur(x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.conv2d(x, wy, groups=c), wx, groups=c)

    c1, c2 = 0.01**2, 0.03**2
    mu_a, mu_b = blur(a), blur(b)
    var_a, var_b, cov = blur(a * a) - mu_a**2, blur(b * b) - mu_b**2, blur(a * b) - mu_a * mu_b
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return s.flatten(1).mean(1)


def nearest_member_ssim(queries: torch.Tensor, bank: torch.Tensor, top: int = PREFILTER,
                        chunk: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Best SSIM of each query (N, C, H, W in [0, 1]) to the bank's images, and which: the ``top`` nearest
    in pixel L2 are compared (one matmul per chunk), not all of them."""
    flat = bank.flatten(1).float()
    norms = (flat * flat).sum(1)
    best, which = [], []
    for i in range(0, len(queries), chunk):
        q = queries[i : i + chunk]
        qf = q.flatten(1).float()
        d = norms[None] - 2 * qf @ flat.T  # + |q|^2, the same for every member
        idx = d.topk(min(top, len(flat)), dim=1, largest=False).indices
        s = ssim(q.repeat_interleave(idx.shape[1], 0), bank[idx.flatten()]).view(len(q), -1)
        v, j = s.max(1)
        best.append(v)
        which.append(idx.gather(1, j[:, None]).squeeze(1))
    return torch.cat(best), torch.cat(which)


# --- the oracle ----------------------------------------------------------------------------------


class Lookups:
    """Member tables hit by images in [0, 1] pixels, summed over the pair's memories, each image as is."""

    def __init__(self, pair: AuditedPair):
        self.memories = list(pair.head.memories.values())
        self.mean = pair.mean.double().cpu()
        self.std = pair.std.double().cpu()
        self.count = 0

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        x = (images.double() - self.mean) / self.std
        self.count += len(images) * len(self.memories)
        return sum(m.hits(x, variants=False)[0] for m in self.memories)

    @property
    def tables(self) -> int:
        return sum(m.cfg.tables for m in self.memories)


def oracle(pair: AuditedPair, groups: dict[str, torch.Tensor], chunk: int = 2048) -> dict:
    """Per memory and table kind: how many of each group's images hit how many tables (variants included)."""
    out: dict = {}
    for name, memory in pair.head.memories.items():
        tables = memory.cfg.tables
        kinds = ("members", "externals") if memory.externals is not None else ("members",)
        for group, images in groups.items():
            hits = [torch.cat(h) for h in zip(*(memory.hits(pair.normalize(images[i : i + chunk]).double())
                                                for i in range(0, len(images), chunk)))]
            for kind, h in zip(kinds, hits):
                out.setdefault(name, {}).setdefault(f"{kind}_tables", {})[group] = {
                    "n": len(h),
                    "mean_tables_hit": round(float(h.double().mean()), 3),
                    "share_hitting_any": round(float((h >= 1).double().mean()), 5),
                    "share_hitting_half": round(float((h >= tables / 2).double().mean()), 5),  # the flag
                    "share_hitting_all": round(float((h >= tables).double().mean()), 5),
                    "histogram": torch.bincount(h.long(), minlength=tables + 1).tolist(),  # images hitting 0..tables
                }
    return out


# --- the attack ----------------------------------------------------------------------------------


class Moves:
    """Random moves in a memory's whitened PCA space, mapped back to pixel deltas at its pooling."""

    def __init__(self, pair: AuditedPair):
        memory = min(pair.head.memories.values(), key=lambda m: m.cfg.border)  # the one that reads the most pixels
        self.back = torch.linalg.pinv(memory.projection)  # (dims, features): whitened -> normalised pooled pixels
        self.pool, self.border = memory.cfg.pool, memory.cfg.border
        c, size = pair.config.in_chans, pair.config.image_size
        self.side = (size - 2 * self.border) // self.pool
        self.shape = (c, self.side, self.side)
        self.std = pair.std.double().cpu().view(1, c, 1, 1)
        self.size = size

    def __call__(self, n: int, sigma: float, g: torch.Generator) -> torch.Tensor:
        eps = torch.randn(n, self.back.shape[0], generator=g, dtype=torch.float64)
        delta = (sigma * eps @ self.back).view(n, *self.shape) * self.std  # pixel units in [0, 1]
        delta = F.interpolate(delta, scale_factor=self.pool, mode="nearest")
        pad = self.size - delta.shape[-1]
        return F.pad(delta, (self.border, pad - self.border, self.border, pad - self.border))

    def carry(self, start: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``start`` with ``target``'s pooled pixels (its own detail within each pooling cell kept)."""
        p = self.pool
        diff = F.avg_pool2d(target.double() - start.double(), p)
        return (start.double() + F.interpolate(diff, scale_factor=p, mode="nearest")).clamp(0, 1)


def attack(start: torch.Tensor, lookups: Lookups, moves: Moves, budget: int, batch: int, seed: int,
           sigma: float = 0.1, sigma_range: tuple[float, float] = (0.01, 0.3)) -> dict:
    """Climb from ``start`` (1, C, H, W in [0, 1]) to hit more member tables, within ``budget`` lookups."""
    g = torch.Generator().manual_seed(seed)
    used0, t0 = lookups.count, time.process_time()
    x = start.double()
    hits = first = int(lookups(x)[0])
    best, best_hits, gains = x, hits, 0
    per_image = len(lookups.memories)
    while lookups.count - used0 + batch * per_image <= budget:
        cand = (x + moves(batch, sigma, g)).clamp(0, 1)
        h = lookups(cand)
        i = int(h.argmax())
        gained = int(h[i]) > hits
        if int(h[i]) >= hits:  # sideways moves too: they cross the plateaus between hits
            x, hits = cand[i : i + 1], int(h[i])
        if hits > best_hits:
            best, best_hits = x, hits
        gains += gained
        sigma = min(sigma * 1.5, sigma_range[1]) if gained else max(sigma * 0.9, sigma_range[0])
    return {"image": best.float(), "start_hits": first, "best_hits": best_hits, "gains": gains,
            "lookups": lookups.count - used0, "cpu_seconds": time.process_time() - t0}


# --- the run -------------------------------------------------------------------------------------


def _quantiles(v: torch.Tensor) -> dict:
    q = torch.quantile(v.double(), torch.tensor([0.0, 0.1, 0.5, 0.9, 1.0], dtype=torch.float64))
    return dict(zip(("min", "p10", "median", "p90", "max"), (round(float(x), 4) for x in q)))


def machine() -> str:
    return (f"{platform.machine()} {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads, "
            f"load average {os.getloadavg()[0]:.1f}")


def main(argv: list[str] | None = None, bench: Benchmark | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("pair", nargs="?", default=str(ROOT / "models" / "fashion-mnist-resnet18"))
    ap.add_argument("--seeds", type=int, default=100, help="test images attacked, one per seed (default: 100)")
    ap.add_argument("--budget", type=int, default=100_000, help="memory lookups per seed (default: 100000)")
    ap.add_argument("--batch", type=int, default=256, help="candidate images per step (default: 256)")
    ap.add_argument("--oracle-n", type=int, default=None, help="images per group for the oracle (default: all)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--smoke", action="store_true", help="tiny sizes: 2 seeds, 400 lookups, 100 images per group")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "reconstruction_attack.json"))
    args = ap.parse_args(argv)
    if args.smoke:
        args.seeds, args.budget, args.batch, args.oracle_n = 2, 400, 50, 100
    torch.set_num_threads(args.threads)
    wall0, cpu0 = time.time(), time.process_time()

    pair = AuditedPair.from_pretrained(args.pair)
    if not pair.head.memories:
        raise SystemExit(f"{args.pair} has no hashed memories: nothing to attack")
    bench = bench or load_benchmark(pair.config.dataset, image_size=pair.config.image_size)
    split = MembershipSplit.from_config(pair.config.split)
    n = args.oracle_n
    groups = {"members": bench.train_images[split.members[:n]], "externals": bench.train_images[split.external[:n]],
              "calibration_nonmembers": bench.train_images[split.calibration_nonmembers[:n]],
              "test": bench.test_images[:n]}
    revealed = oracle(pair, groups)
    oracle_cpu = time.process_time() - cpu0
    print(json.dumps({m: {k: {g: r["share_hitting_half"] for g, r in v.items()} for k, v in t.items()}
                      for m, t in revealed.items()}), file=sys.stderr, flush=True)

    members = bench.train_images[split.members].double() / 255
    picks = torch.randperm(len(bench.test_images), generator=torch.Generator().manual_seed(0))[: args.seeds]
    starts = bench.test_images[picks].double() / 255
    lookups, moves = Lookups(pair), Moves(pair)
    runs = []
    for seed, start in enumerate(starts):
        r = attack(start[None], lookups, moves, args.budget, args.batch, seed)
        runs.append(r)
        print(f"seed {seed}: hits {r['start_hits']} -> {r['best_hits']} of {lookups.tables} member tables, "
              f"{r['lookups']} lookups, {r['cpu_seconds']:.1f} CPU s", file=sys.stderr, flush=True)
    recovered = torch.cat([r["image"] for r in runs]).double()
    start_ssim, start_nearest = nearest_member_ssim(starts, members)
    final_ssim, final_nearest = nearest_member_ssim(recovered, members)
    ceiling = ssim(moves.carry(starts, members[start_nearest]), members[start_nearest])
    # What the memories are computed from at best: each member's pooled pixels, enlarged back (nearest).
    p = moves.pool
    pooled = torch.cat([ssim(F.interpolate(F.avg_pool2d(members[i : i + 4096], p), scale_factor=p, mode="nearest"),
                             members[i : i + 4096]) for i in range(0, len(members), 4096)])
    to_uint8 = lambda x: (x * 255).round().clamp(0, 255).to(torch.uint8)  # noqa: E731
    # Each reading's decision at its own threshold: the search climbs the member tables, which the fingerprint
    # reads and the aMINT verdict (the trace head on the model) does not.
    flags_recovered = score_images(pair, to_uint8(recovered)).decisions
    flags_start = score_images(pair, to_uint8(starts)).decisions

    success = final_ssim >= SUCCESS_SSIM
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": " ".join(["python benchmarks/reconstruction_attack.py", *(sys.argv[1:] if argv is None else argv)]),
        "machine": machine(),
        "pair": Path(args.pair).name,
        "dataset": pair.config.dataset,
        "memories": {k: {"tables": m.cfg.tables, "bits": m.cfg.bits, "dims": m.dims, "externals": m.externals is not None,
                         "occupancy": m.occupancy()} for k, m in pair.head.memories.items()},
        "oracle": {
            "what": "tables hit per image, each memory's aligned variants included; the flag is hitting at least "
                    "half of a memory's tables",
            "groups": {g: len(v) for g, v in groups.items()},
            "memories": revealed,
            "cpu_seconds": round(oracle_cpu, 1),
        },
        "attack": {
            "settings": {"seeds": args.seeds, "budget_lookups_per_seed": args.budget, "batch": args.batch,
                         "lookup": "one image in one memory's member tables, as is", "start_images": "test split, "
                         "randperm seed 0", "success": f"SSIM >= {SUCCESS_SSIM} to some member (L2 top {PREFILTER}, "
                         "then SSIM, 11x11 Gaussian window sigma 1.5)", "member_tables": lookups.tables},
            "successes": int(success.sum()),
            "success_rate": round(float(success.double().mean()), 4),
            "successes_beyond_start": int((success & (start_ssim < SUCCESS_SSIM)).sum()),
            "start_at_or_above": int((start_ssim >= SUCCESS_SSIM).sum()),
            "best_ssim_recovered": _quantiles(final_ssim),
            "best_ssim_start": _quantiles(start_ssim),
            "ssim_gain": _quantiles(final_ssim - start_ssim),
            "ceiling_ssim": _quantiles(ceiling),
            "ceiling_what": "the start image carrying its nearest member's pooled pixels exactly (its own detail "
                            "within each pooling cell): the most this search can recover of that member",
            "pooled_members_ssim": _quantiles(pooled),
            "pooled_members_at_or_above": round(float((pooled >= SUCCESS_SSIM).double().mean()), 4),
            "pooled_what": f"every member against its own {p}x{p}-pooled pixels enlarged back (nearest): the memories "
                           "hash less than that (whitened leading components of the pooled image, direction only)",
            "member_tables_hit_start": _quantiles(torch.tensor([r["start_hits"] for r in runs])),
            "member_tables_hit_recovered": _quantiles(torch.tensor([r["best_hits"] for r in runs])),
            "pair_flags_start": {name: int(d.sum()) for name, d in flags_start.items()},
            "pair_flags_recovered": {name: int(d.sum()) for name, d in flags_recovered.items()},
            "lookups_total": sum(r["lookups"] for r in runs),
            "cpu_seconds": round(sum(r["cpu_seconds"] for r in runs), 1),
            "per_seed": [{"seed": s, "test_index": int(picks[s]), "start_ssim": round(float(start_ssim[s]), 4),
                          "recovered_ssim": round(float(final_ssim[s]), 4),
                          "nearest_member": int(split.members[final_nearest[s]]),
                          "start_hits": r["start_hits"], "recovered_hits": r["best_hits"], "lookups": r["lookups"],
                          "cpu_seconds": round(r["cpu_seconds"], 2)} for s, r in enumerate(runs)],
        },
        "cpu_seconds": round(time.process_time() - cpu0, 1),
        "wall_seconds": round(time.time() - wall0, 1),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    a = result["attack"]
    print(f"success {a['successes']}/{args.seeds} (beyond the start {a['successes_beyond_start']}); best SSIM recovered "
          f"{a['best_ssim_recovered']}, start {a['best_ssim_start']}, ceiling {a['ceiling_ssim']}", file=sys.stderr)
    return result


if __name__ == "__main__":
    main()

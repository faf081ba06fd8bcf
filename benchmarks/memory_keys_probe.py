"""Which keys should a memory hash? Nearest-member search in four key spaces, exact and edited queries.

    python benchmarks/memory_keys_probe.py models/fashion-mnist-resnet18 [--n 1000]

For n held-out members and n test images (edited alike), the cosine similarity to the nearest of the
pair's 25,000 members, as an AUC, in: raw pixels (2x2 pooled, mean removed), the same whitened
(PCA on members and externals, 128 components), the pair's entry activation maps (its first two
feature stages, 14x14 pooled, LayerNorm), and those whitened. Exact search, no hashing: the ceiling
a hashed memory of those keys can reach. This probe chose the memories' keys (benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from amint.backbones import create_backbone  # noqa: E402
from amint.data import load_benchmark  # noqa: E402
from amint.edits import edit_images  # noqa: E402
from amint.evaluate import roc_auc, tpr_at_fpr  # noqa: E402
from amint.pair import AuditedPair  # noqa: E402
from amint.robustness import eval_images  # noqa: E402
from amint.splits import MembershipSplit  # noqa: E402

EDITS = ("png", "jpeg75", "resize224", "screenshot", "shift1", "crop92")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("pair")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--dims", type=int, default=128)
    args = ap.parse_args()
    pair = AuditedPair.from_pretrained(args.pair)
    bench = load_benchmark(pair.config.dataset)
    split = MembershipSplit.from_config(pair.config.split)
    entry = create_backbone(pair.config.backbone, pair.config.num_classes, pair.config.in_chans,
                            pair.config.image_size, pair.config.backbone_kwargs)
    entry.load_state_dict(pair.backbone.state_dict())
    entry.eval()

    @torch.no_grad()
    def activations(images: torch.Tensor) -> torch.Tensor:
        out = []
        for i in range(0, len(images), 1000):
            _, maps = entry.forward_intermediates(pair.normalize(images[i : i + 1000]), indices=[0, 1],
                                                  intermediates_only=False)
            f = torch.cat([F.adaptive_avg_pool2d(m, 14) for m in maps], 1).flatten(1)
            out.append(F.layer_norm(f, f.shape[1:]))
        return torch.cat(out)

    def pixels(images: torch.Tensor) -> torch.Tensor:
        x = F.avg_pool2d(images.float(), 2).flatten(1)
        return x - x.mean(1, keepdim=True)

    train = bench.train_images[torch.cat([split.members, split.external])]
    keys = {"pixels": pixels, "entry activations": activations}
    spaces = {}
    for name, fn in keys.items():
        fit = fn(train)
        center = fit.mean(0)
        if fit.shape[1] <= 2000:
            _, s, vh = torch.linalg.svd(fit - center, full_matrices=False)
            v = vh.T
        else:  # 6,272 activation features: the leading components only
            _, s, v = torch.svd_lowrank(fit - center, q=args.dims + 20, niter=3)
        white = v[:, : args.dims] / (s[: args.dims] / len(fit) ** 0.5)
        members = fn(bench.train_images[split.members])
        spaces[name] = (fn, None, F.normalize(members, dim=1))
        spaces[f"{name}, whitened"] = (fn, (center, white), F.normalize((members - center) @ white, dim=1))

    def nearest(q: torch.Tensor, bank: torch.Tensor) -> torch.Tensor:
        return torch.cat([(q[i : i + 2000] @ bank.T).amax(1) for i in range(0, len(q), 2000)])

    qm, qn = eval_images(bench, split, args.n)
    results = {}
    for edit in EDITS:
        em, en = edit_images(qm, edit, pair.config), edit_images(qn, edit, pair.config)
        for name, (fn, white, bank) in spaces.items():
            fm, fn_ = fn(em), fn(en)
            if white:
                fm, fn_ = (fm - white[0]) @ white[1], (fn_ - white[0]) @ white[1]
            sm, sn = nearest(F.normalize(fm, dim=1), bank), nearest(F.normalize(fn_, dim=1), bank)
            results.setdefault(name, {})[edit] = {"auc": round(roc_auc(sm, sn), 4),
                                                  "tpr_at_1pct_fpr": round(tpr_at_fpr(sm, sn, 0.01), 4)}
        print(edit, {k: v[edit] for k, v in results.items()}, file=sys.stderr, flush=True)
    print(json.dumps({"n": args.n, "dims": args.dims, "results": results}, indent=1))


if __name__ == "__main__":
    main()

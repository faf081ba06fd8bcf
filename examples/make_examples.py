"""Write the demo's example images with known ground truth for a pair, and the pair's answers to them.

Members are drawn from the pair's evaluation members (training images never used for calibration),
non-members from the official test split (never seen by the model, never written into the memories),
using the membership split recorded in the pair's config.json. For each image ``examples.json`` keeps
the truth and each reading's known answer as ``verify`` gives it from the PNG file: ``amint`` (the
aMINT verdict; ``combined`` for a legacy pair) and ``fingerprint`` (with what it matched), and whether the
two readings agree. With ``--control`` (a pair trained on the same split, e.g. the passive control), each image
also keeps the control's answers and ``amint_differs_from_control``: whether the two models' aMINT verdicts
differ on it (the gallery marks those). Writes PNGs and ``examples.json`` next to this script:

    python examples/make_examples.py                      # the models/fashion-mnist-* pair
    python examples/make_examples.py --n 12 --control models/fashion-mnist-resnet18-passive --differ 2
    python examples/make_examples.py --pair models/NAME --n 8 --out examples
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from amint.data import Benchmark, load_benchmark  # noqa: E402
from amint.pair import AuditedPair  # noqa: E402
from amint.splits import MembershipSplit  # noqa: E402
from amint.verify import verify_images  # noqa: E402

INDEX = "examples.json"


def _to_png(image: torch.Tensor, path: Path) -> None:
    a = image.numpy()
    Image.fromarray(a[0] if a.shape[0] == 1 else a.transpose(1, 2, 0)).save(path)


def make_examples(pair: AuditedPair, out_dir: str | Path, pair_name: str, n_per_side: int = 8, seed: int = 0,
                  bench: Benchmark | None = None, control: AuditedPair | None = None,
                  control_name: str | None = None, differ: int = 0, pool: int = 300) -> dict:
    """Pick ``n_per_side`` members and non-members at random (seeded), write them, return the index.

    ``control``: a second pair on the same split (its passive control): its answers are kept beside the pair's.
    ``differ``: with a control, also add up to this many images where the two aMINT verdicts differ, the first
    found among the next ``pool`` members and ``pool`` non-members of the same seeded draw, marked ``chosen`` (they
    were picked for the disagreement, so they say nothing about how often it happens)."""
    if control is not None and control.config.split.get("members_sha256") != pair.config.split.get("members_sha256"):
        raise ValueError(f"the control {control_name} was not trained on {pair_name}'s membership split")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for old in [*out.glob("member_*.png"), *out.glob("nonmember_*.png")]:
        old.unlink()
    split = MembershipSplit.from_config(pair.config.split)
    bench = bench or load_benchmark(pair.config.dataset)
    g = torch.Generator().manual_seed(seed)
    member_draw = split.eval_members[torch.randperm(len(split.eval_members), generator=g)]
    nonmember_draw = split.eval_nonmembers[torch.randperm(len(split.eval_nonmembers), generator=g)]
    members, nonmembers = member_draw[:n_per_side], nonmember_draw[:n_per_side]
    names = pair.config.class_names
    examples = []
    for i in range(max(len(members), len(nonmembers))):  # interleaved, so the gallery shows both kinds
        for truth, split_name, indices, images, labels in (
            ("member", "train", members, bench.train_images, bench.train_labels),
            ("nonmember", "test", nonmembers, bench.test_images, bench.test_labels),
        ):
            if i >= len(indices):
                continue
            index = int(indices[i])
            file = f"{truth}_{i:02d}.png"
            _to_png(images[index], out / file)
            examples.append({"file": file, "truth": truth, "class": names[int(labels[index])],
                             "split": split_name, "index": index})
    if control is not None and differ > 0:
        found = _where_amint_differs(pair, control, member_draw[n_per_side:n_per_side + pool],
                                     nonmember_draw[n_per_side:n_per_side + pool], bench, differ)
        counts = {"member": len(members), "nonmember": len(nonmembers)}
        for truth, index in found:
            images, labels = ((bench.train_images, bench.train_labels) if truth == "member"
                              else (bench.test_images, bench.test_labels))
            file = f"{truth}_{counts[truth]:02d}.png"
            counts[truth] += 1
            _to_png(images[index], out / file)
            examples.append({"file": file, "truth": truth, "class": names[int(labels[index])],
                             "split": "train" if truth == "member" else "test", "index": index,
                             "chosen": f"the aMINT verdicts of {pair_name} and {control_name} differ on it"})
    files = [out / e["file"] for e in examples]
    for e, v in zip(examples, verify_images(pair, files)):
        e |= answers(v)
        if v.is_member is not None and v.has_fingerprint:
            e["readings_agree"] = v.is_member == v.fingerprint_is_member
    data = {"pair": pair_name, "dataset": pair.config.dataset, "seed": seed}
    if control is not None:
        data["control"] = control_name
        for e, v in zip(examples, verify_images(control, files)):
            e["control"] = answers(v)
            mine = e.get(v.reading) if v.reading else None
            e["amint_differs_from_control"] = (mine is not None and v.is_member is not None
                                               and v.is_member != mine["is_member"])
    data["examples"] = examples
    (out / INDEX).write_text(json.dumps(data, indent=2) + "\n")
    return data


def _where_amint_differs(pair: AuditedPair, control: AuditedPair, members: torch.Tensor, nonmembers: torch.Tensor,
                         bench: Benchmark, n: int) -> list[tuple[str, int]]:
    """(truth, index) of the first ``n`` candidates, members and non-members in turn, whose aMINT verdicts
    differ between the pair and the control."""
    def arrays(images: torch.Tensor) -> list:
        return [x[0].numpy() if x.shape[0] == 1 else x.numpy().transpose(1, 2, 0) for x in images]

    out: dict[str, list[int]] = {}
    for truth, indices, images in (("member", members, bench.train_images), ("nonmember", nonmembers, bench.test_images)):
        batch = arrays(images[indices])
        mine, theirs = verify_images(pair, batch), verify_images(control, batch)
        out[truth] = [int(i) for i, a, b in zip(indices, mine, theirs)
                      if a.is_member is not None and b.is_member is not None and a.is_member != b.is_member]
    ms, ns = out["member"], out["nonmember"]
    order = []
    for k in range(max(len(ms), len(ns))):
        order += [("member", ms[k])] if k < len(ms) else []
        order += [("nonmember", ns[k])] if k < len(ns) else []
    return order[:n]


def answers(v) -> dict:
    """One verdict's known answers, per reading: {"amint" (or "combined"): {...}, "fingerprint": {...}}."""
    out = {}
    if v.member_probability is not None:
        out[v.reading] = {"probability": round(v.member_probability, 6), "is_member": v.is_member}
    if v.has_fingerprint:
        out["fingerprint"] = {"probability": round(v.fingerprint_probability, 6), "is_member": v.fingerprint_is_member,
                              "match": v.fingerprint_match.kind}
    return out


def _default_pair() -> Path:
    found = sorted(p.parent for p in (ROOT / "models").glob("fashion-mnist*/config.json"))
    if not found:
        sys.exit("No models/fashion-mnist-*/ pair found; pass --pair.")
    return found[0]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pair", type=Path, default=None, help="pair folder (default: models/fashion-mnist-*)")
    ap.add_argument("--n", type=int, default=8, help="members and as many non-members")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    ap.add_argument("--control", type=Path, default=None,
                    help="a pair on the same split (e.g. models/fashion-mnist-resnet18-passive): keep its answers and "
                         "mark the examples where the two aMINT verdicts differ")
    ap.add_argument("--differ", type=int, default=0,
                    help="with --control: add up to this many images picked because the two aMINT verdicts differ")
    args = ap.parse_args(argv)
    folder = args.pair or _default_pair()
    pair = AuditedPair.from_pretrained(folder)
    control = AuditedPair.from_pretrained(args.control) if args.control else None
    data = make_examples(pair, args.out, folder.name, args.n, args.seed, control=control,
                         control_name=args.control.name if args.control else None, differ=args.differ)
    print(f"wrote {len(data['examples'])} examples of {folder.name} to {args.out}")
    if control is not None:
        differ = [e["file"] for e in data["examples"] if e["amint_differs_from_control"]]
        print(f"aMINT verdicts of {folder.name} and {args.control.name} differ on {len(differ)}: {', '.join(differ)}")


if __name__ == "__main__":
    main()

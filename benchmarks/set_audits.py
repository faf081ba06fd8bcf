"""Set audits as a user runs them: zips of PNGs through ``python -m amint audit PAIR SET.zip --json``.

    python benchmarks/set_audits.py models/fashion-mnist-resnet18 --out benchmarks/results/set_audits.json

Four sets of 500 images: the first 500 scored members (members held out from calibration only); the first
100 or 50 of them among the last 400 or 450 test images; the last 500 test images (never seen). Each set is
written as a zip of PNGs (the model's own pixels) and audited by the CLI, exactly as a user would; a row per
pair is merged into ``--out`` with each reading's flagged count, the count its bound allows, and p.
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from amint.data import load_benchmark  # noqa: E402
from amint.edits import to_pil  # noqa: E402
from amint.pair import PairConfig  # noqa: E402
from amint.robustness import eval_images  # noqa: E402
from amint.splits import MembershipSplit  # noqa: E402

SETS = {"500 members": (500, 0), "100 members among 500": (100, 400), "50 members among 500": (50, 450),
        "500 never-seen test images": (0, 500)}


def write_zip(images: torch.Tensor, path: Path) -> None:
    """uint8 (N, C, H, W) images as PNGs in a zip (grey or colour, as amint.edits.to_pil reads them)."""
    with zipfile.ZipFile(path, "w") as z:
        for i, image in enumerate(images):
            buf = io.BytesIO()
            to_pil(image.permute(1, 2, 0).numpy()).save(buf, "PNG")
            z.writestr(f"{i:04d}.png", buf.getvalue())


def audit(pair: str, path: Path) -> dict:
    """Both set-level answers of ``amint audit --json`` (the per-image rows left out)."""
    done = subprocess.run([sys.executable, "-m", "amint", "audit", pair, str(path), "--json"], cwd=ROOT,
                          capture_output=True, text=True, check=True)
    answer = json.loads(done.stdout)

    def brief(r: dict) -> dict:
        return {k: r[k] for k in ("n_images", "n_flagged", "expected_by_chance", "fpr", "p_value", "reading")}
    return {"amint": brief(answer), "fingerprint": brief(answer["fingerprint"])}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("pair", help="a pair folder (its config.json gives the split)")
    p.add_argument("--name", default=None, help="its row in --out (default: the folder's name)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "set_audits.json"))
    args = p.parse_args(argv)
    config = PairConfig.load(Path(args.pair) / "config.json")
    members, test = eval_images(load_benchmark(config.dataset), MembershipSplit.from_config(config.split))
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (m, n) in SETS.items():
            path = Path(tmp) / f"set_{m}_{n}.zip"
            write_zip(torch.cat([members[:m], test[len(test) - n:]]), path)
            rows[name] = audit(args.pair, path)
            print(name, json.dumps({k: (v["n_flagged"], v["p_value"]) for k, v in rows[name].items()}), flush=True)
    record = json.loads(Path(args.out).read_text()) if Path(args.out).exists() else {}
    record[args.name or Path(args.pair).name] = {
        "sets": rows, "command": "python benchmarks/set_audits.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    Path(args.out).write_text(json.dumps(record, indent=1) + "\n")
    return record


if __name__ == "__main__":
    main()

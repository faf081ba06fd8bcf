"""Screenshots of the Verify tab's two readings on the default pair, desktop (1280 wide) and phone (390 wide).

Serves the app on the default pair (models/fashion-mnist-resnet18) and, when it is there, its passive control
(models/fashion-mnist-resnet18-passive, made by the README's command); headless Chromium (selenium +
chromedriver, the Page of tests/test_screenshots.py) verifies examples/member_00.png by clicking its example, then
compares it with the passive control (that picture: the Compare accordion alone), then audits the 13 member examples
(that picture: the Audit tab's set-level answers). Writes small palette PNGs to benchmarks/results/screenshots/:

    python benchmarks/readings_screenshots.py                  # both sizes
    python benchmarks/readings_screenshots.py --example member_03.png
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DEFAULT = ROOT / "models" / "fashion-mnist-resnet18"
PASSIVE = ROOT / "models" / "fashion-mnist-resnet18-passive"
OUT = ROOT / "benchmarks" / "results" / "screenshots"
SIZES = {"desktop": (1280, 800, False), "phone": (390, 844, True)}


def _small(src: Path, dest: Path, box: tuple[int, int] | None = None) -> Path:
    """A 256-colour PNG of the capture (a full page at 1280 px is several MB as RGB); ``box``: only the rows
    from top to bottom (page pixels)."""
    from PIL import Image

    with Image.open(src) as im:
        if box:
            im = im.crop((0, max(0, box[0]), im.width, min(im.height, box[1])))
        im.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE) \
            .save(dest, optimize=True)
    return dest


def _element_shot(page, css: str, path: Path, margin: int = 12) -> Path:
    """One element of the page (and ``margin`` px around it), captured beyond the viewport if need be."""
    import base64

    top, height = page.d.execute_script(
        f"const r = document.querySelector('{css}').getBoundingClientRect(); return [r.top + window.scrollY, r.height]")
    width = page.size[0]
    clip = {"x": 0, "y": max(0, top - margin), "width": width, "height": height + 2 * margin, "scale": 1}
    data = page.d.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True,
                                                             "clip": clip})["data"]
    path.write_bytes(base64.b64decode(data))
    return path


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--example", default="member_00.png", help="the example to click (a file in examples/)")
    ap.add_argument("--sizes", default="desktop,phone")
    args = ap.parse_args(argv)

    scratch = Path(tempfile.mkdtemp(prefix="amint-shots."))
    models = scratch / "models"
    models.mkdir()
    (models / DEFAULT.name).symlink_to(DEFAULT, target_is_directory=True)
    control = None
    if (PASSIVE / "model.safetensors").is_file():
        control = PASSIVE.name
        (models / control).symlink_to(PASSIVE.resolve(), target_is_directory=True)
    os.environ.update({"AMINT_MODELS_DIR": str(models), "AMINT_EXAMPLES_DIR": str(ROOT / "examples"),
                       "AMINT_ARTIFACTS": str(scratch)})
    index = [e["file"] for e in json.loads((ROOT / "examples" / "examples.json").read_text())["examples"]]
    position = index.index(args.example)
    members = [str(ROOT / "examples" / f) for f in index if f.startswith("member_")]

    from amint.ui import build_app
    from tests.test_screenshots import Page

    demo = build_app()
    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True)
    OUT.mkdir(parents=True, exist_ok=True)
    written = []
    try:
        for size in args.sizes.split(","):
            width, height, mobile = SIZES[size]
            page = Page(demo.local_url, width, height, mobile)
            try:
                page.wait("#verify-examples .thumbnail-item")
                page.d.execute_script("const e = document.querySelectorAll('#verify-examples .thumbnail-item')"
                                      f"[{position}]; e.scrollIntoView({{block: 'center'}}); e.click();")
                page.wait_text("#verify-verdict", "Known answer", 90)
                page.wait_text("#verify-why", "What", 120)
                page.settle()
                page.d.execute_script("window.scrollTo(0, 0)")
                stem = Path(args.example).stem
                written.append(_small(page.shot(f"verify-{stem}-{size}"), OUT / f"verify-{stem}-{size}.png"))
                if control:
                    page.click_text("button", "Compare with another pair")
                    page.click("#compare-button")
                    page.wait_text("#compare-result", "fingerprint", 90)
                    page.settle()
                    written.append(_small(_element_shot(page, "#verify-compare", scratch / "compare.png"),
                                          OUT / f"compare-{stem}-{size}.png"))
                page.audit(members, "member_", f"audit-{size}")
                written.append(_small(_element_shot(page, "#audit-summary", scratch / "audit.png"),
                                      OUT / f"audit-members-{size}.png"))
            finally:
                page.quit()
    finally:
        demo.close()
    for path in written:
        print(f"{path.relative_to(ROOT)}  {path.stat().st_size // 1024} KB")
    if not control:
        print(f"no passive control at {PASSIVE.relative_to(ROOT)}: compare screenshots not taken")


if __name__ == "__main__":
    main()

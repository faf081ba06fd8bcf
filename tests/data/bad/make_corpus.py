"""The hostile and broken uploads corpus: what a public demo receives, and what each should get.

    python tests/data/bad/make_corpus.py [FOLDER]     # (re)write the small files here (they are committed)

Small files are committed beside this script; large ones (bombs, 10,000-image zips, oversized
files) are written at test time by ``make_large(folder)``. ``IMAGES`` and ``ZIPS`` say what each case
must get: ``SCORED`` (a verdict) or a regex the one-line message matches.
"""

from __future__ import annotations

import io
import stat
import struct
import sys
import zipfile
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
SCORED = "scored"

# name -> what verifying it must give. Names starting with "large_" are made by make_large().
IMAGES: dict[str, str] = {
    "zero_bytes.png": r"is empty",
    "truncated.png": r"not a readable image",
    "truncated.jpg": r"not a readable image",
    "text_named.png": r"not a readable image \(unknown or unsupported format\)",
    "html_named.jpg": r"not a readable image \(unknown or unsupported format\)",
    "png_named.jpg": SCORED,  # the content decides, not the name
    "one_pixel.png": SCORED,
    "wide_20000x2.png": SCORED,  # extreme aspect ratio: only the centre square is resampled
    "tall_3x9000.png": SCORED,
    "gray16.png": SCORED,
    "bilevel.png": SCORED,
    "gray_alpha.png": SCORED,
    "cmyk.jpg": SCORED,
    "palette_transparent.png": SCORED,
    "rgba.png": SCORED,
    "animated.gif": SCORED,  # the first frame
    "multipage.tiff": SCORED,  # the first page
    "float_nan.tiff": SCORED,  # NaN reads as black
    "exif_rotated.jpg": SCORED,  # turned upright first
    "image.webp": SCORED,
    "color.png": SCORED,  # into a gray pair
    "gray.png": SCORED,  # into a colour pair
    "large_bomb_8000x8000.png": r"too large to be checked \(8,000x8,000 pixels, 64 megapixels; the limit is 40\)",
    "large_bomb_40000x40000.png": r"too large to be checked \(1,600,000,000 pixels; the limit is 40 megapixels\)",
    "large_51mb.png": r"too large to be checked \(51 MB",
}

# name -> what auditing it must give (the same zips go to the Train tab).
ZIPS: dict[str, str] = {
    "traversal.zip": r"unsafe path \('\.\./",
    "absolute.zip": r"unsafe path \('/",
    "symlink.zip": r"symbolic link",
    "nonimage_members.zip": SCORED,  # the two images are scored, the rest ignored
    "nested.zip": r"zips inside zips are not opened",
    "not_a_zip.zip": r"not a readable zip archive",
    "empty.zip": r"No images found",
    "large_bomb.zip": r"zip bomb",
    "large_10000_images.zip": r"holds 10,000 images; the limit is 5,000",
}


def _noise(h: int, w: int, c: int = 1, seed: int = 0) -> np.ndarray:
    a = np.random.default_rng(seed).integers(0, 256, (h, w, c), dtype=np.uint8)
    return a[..., 0] if c == 1 else a


def _png_bytes(im: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG", **kw)
    return buf.getvalue()


def _jpeg_bytes(im: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="JPEG", **kw)
    return buf.getvalue()


def _zip(path: Path, entries: list[tuple[str, bytes]] | list[tuple[zipfile.ZipInfo | str, bytes]]) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries:
            zf.writestr(name, data)


def make_small(folder: Path = HERE) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    gray = Image.fromarray(_noise(28, 28))
    good_png = _png_bytes(gray)
    (folder / "zero_bytes.png").write_bytes(b"")
    (folder / "truncated.png").write_bytes(_png_bytes(Image.fromarray(_noise(64, 64, 3)))[:400])
    (folder / "truncated.jpg").write_bytes(_jpeg_bytes(Image.fromarray(_noise(64, 64, 3)))[:600])
    (folder / "text_named.png").write_text("this is a text file, not an image\n")
    (folder / "html_named.jpg").write_text("<html><script>alert(1)</script></html>\n")
    (folder / "png_named.jpg").write_bytes(good_png)
    Image.fromarray(np.full((1, 1), 200, np.uint8)).save(folder / "one_pixel.png")
    Image.fromarray(_noise(2, 20000)).save(folder / "wide_20000x2.png")
    Image.fromarray(_noise(9000, 3)).save(folder / "tall_3x9000.png")
    Image.fromarray((_noise(28, 28).astype(np.uint16) * 257)).save(folder / "gray16.png")
    gray.convert("1").save(folder / "bilevel.png")
    Image.merge("LA", [gray, Image.fromarray(_noise(28, 28, seed=1))]).save(folder / "gray_alpha.png")
    Image.fromarray(_noise(28, 28, 3)).convert("CMYK").save(folder / "cmyk.jpg", quality=95)
    pal = Image.fromarray(_noise(28, 28, 3)).convert("P", palette=Image.ADAPTIVE, colors=16)
    pal.save(folder / "palette_transparent.png", transparency=0)
    Image.fromarray(_noise(28, 28, 4)).save(folder / "rgba.png")
    frames = [Image.fromarray(_noise(28, 28, seed=i)) for i in range(3)]
    frames[0].save(folder / "animated.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    frames[0].save(folder / "multipage.tiff", save_all=True, append_images=frames[1:])
    f = np.random.default_rng(2).random((28, 28)).astype(np.float32)
    f[3:9, 3:9] = np.nan
    Image.fromarray(f, mode="F").save(folder / "float_nan.tiff")
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to view
    Image.fromarray(_noise(20, 36)).save(folder / "exif_rotated.jpg", exif=exif.tobytes(), quality=95)
    Image.fromarray(_noise(28, 28, 3)).save(folder / "image.webp", lossless=True)
    Image.fromarray(_noise(28, 28, 3, seed=3)).save(folder / "color.png")
    gray.save(folder / "gray.png")

    _zip(folder / "traversal.zip", [("../../evil_amint_traversal.png", good_png), ("ok/a.png", good_png)])
    _zip(folder / "absolute.zip", [("/tmp/evil_amint_absolute.png", good_png), ("ok/a.png", good_png)])
    link = zipfile.ZipInfo("class_a/link.png")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    _zip(folder / "symlink.zip", [(link, b"/etc/passwd"), ("class_a/a.png", good_png)])
    _zip(folder / "nonimage_members.zip", [("set/a.png", good_png), ("set/b.png", _png_bytes(Image.fromarray(_noise(28, 28, seed=5)))),
                                           ("set/notes.txt", b"hello"), ("set/run.py", b"import os\n"),
                                           ("set/.hidden.png", good_png), ("__MACOSX/set/._a.png", b"junk"),
                                           ("set/inner.zip", b"PK\x05\x06" + b"\0" * 18)])
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as zf:
        zf.writestr("a.png", good_png)
    _zip(folder / "nested.zip", [("inner.zip", inner.getvalue())])
    (folder / "not_a_zip.zip").write_bytes(b"PK\x03\x04 this is not really a zip")
    _zip(folder / "empty.zip", [])


def _bomb_png(width: int, height: int) -> bytes:
    """A valid 1-bit PNG header claiming width x height, with a short IDAT: tiny on disk, huge decoded."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    row = b"\0" * (1 + (width + 7) // 8)
    idat = zlib.compress(row * 64, 9)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def make_large(folder: Path) -> dict[str, Path]:
    """Write the large cases into ``folder`` (a test's temporary folder); returns name -> path."""
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for w, h in ((8000, 8000), (40000, 40000)):
        out[f"large_bomb_{w}x{h}.png"] = folder / f"large_bomb_{w}x{h}.png"
        out[f"large_bomb_{w}x{h}.png"].write_bytes(_bomb_png(w, h))
    big = folder / "large_51mb.png"
    big.write_bytes(_png_bytes(Image.fromarray(_noise(28, 28))) + b"\0" * (51 * 2**20))
    out["large_51mb.png"] = big
    # 20 MB of zeros deflates about 1,000x: far past the ratio limit, though under every size limit.
    bomb = folder / "large_bomb.zip"
    _zip(bomb, [("set/zeros.png", b"\0" * (20 * 2**20))])
    out["large_bomb.zip"] = bomb
    many = folder / "large_10000_images.zip"
    png = _png_bytes(Image.fromarray(_noise(8, 8)))
    with zipfile.ZipFile(many, "w", zipfile.ZIP_STORED) as zf:
        for i in range(10_000):
            zf.writestr(f"tiny/class_{i % 2}/{i:05d}.png", png)
    out["large_10000_images.zip"] = many
    return out


def paths(folder_for_large: Path) -> dict[str, Path]:
    """Every case: the committed small files here, the large ones written into ``folder_for_large``."""
    small = {name: HERE / name for name in [*IMAGES, *ZIPS] if not name.startswith("large_")}
    return {**small, **make_large(folder_for_large)}


if __name__ == "__main__":
    make_small(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE)

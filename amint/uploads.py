"""Files from strangers: the limits every upload path shares (CLI, app, audits, training zips).

An image is checked from its header before a pixel is decoded (file size, pixel count), a zip from
its directory before a byte is inflated (entry count, total size, expansion ratio, unsafe paths,
links). Everything refused raises ``UploadError`` with one line that names the file and the limit.
The limits are plain constants so the app can show them and a deployment can read them.
"""

from __future__ import annotations

import os
import shutil
import stat
import time
import zipfile
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Iterator

from PIL import Image

from .catalog import IMAGE_EXTENSIONS

MB = 2**20

# A phone photo is 2-12 MB and a lossless 8K PNG about 50; past this an upload is not a photo to check.
MAX_IMAGE_BYTES = 50 * MB
# Pixels are checked from the header, before decoding: 40 MP covers 8K frames (33 MP) and most
# cameras, and decodes to at most 120 MB of RGB; PIL's own bomb guard only errors at 179 MP.
MAX_IMAGE_PIXELS = 40_000_000
# An audit's table, thumbnails and CSV stay usable in a browser up to a few thousand rows.
MAX_AUDIT_FILES = 5_000
# A training zip may hold a real dataset; past this it belongs on disk, read with imagefolder:PATH.
MAX_TRAIN_FILES = 100_000
# What a zip may inflate to in all, and what one entry may be (an image entry is an image file).
MAX_ZIP_TOTAL_BYTES = 2 * 2**30
MAX_ZIP_ENTRY_BYTES = MAX_IMAGE_BYTES
# Images are already compressed (PNG, JPEG): they deflate 1-3x, raw bitmaps up to ~20x. A zip bomb
# is 1,000x and more. Entries under 1 MB are exempt: tiny files compress erratically and cannot blow up.
MAX_ZIP_RATIO = 100
RATIO_EXEMPT_BYTES = 1 * MB
# Gradio refuses any single upload larger than this before it reaches a handler (launch(max_file_size)).
MAX_UPLOAD_BYTES = 500 * MB


class UploadError(ValueError):
    """An upload refused before it is read: the message names the file and the limit it breaks."""


def limits_words() -> str:
    """The limits in one line, for people (the app shows it under every upload box)."""
    return (f"Limits: {MAX_IMAGE_BYTES // MB} MB and {MAX_IMAGE_PIXELS / 1e6:.0f} megapixels per image, "
            f"{MAX_AUDIT_FILES:,} images per audit, {MAX_UPLOAD_BYTES // MB} MB per uploaded file; a zip may "
            f"unpack to at most {MAX_ZIP_TOTAL_BYTES // 2**30} GB, at most {MAX_ZIP_RATIO}x its packed size, "
            "with no links, no absolute or '..' paths; zips inside zips are not opened.")


# --- images -----------------------------------------------------------------------------------


def check_image_bytes(size: int, name: str) -> None:
    if size == 0:
        raise UploadError(f"{name} is not a readable image (the file is empty)")
    if size > MAX_IMAGE_BYTES:
        raise UploadError(f"{name} is too large to be checked ({size / MB:.0f} MB; the limit is "
                          f"{MAX_IMAGE_BYTES // MB} MB per image)")


def check_image_header(im: Image.Image, name: str) -> None:
    """Refuse an image whose header promises more pixels than the limit (a bomb is tiny on disk)."""
    w, h = im.size
    if w < 1 or h < 1:
        raise UploadError(f"{name} is not a readable image (it is {w}x{h} pixels)")
    if w * h > MAX_IMAGE_PIXELS:
        raise UploadError(f"{name} is too large to be checked ({w:,}x{h:,} pixels, {w * h / 1e6:,.0f} megapixels; "
                          f"the limit is {MAX_IMAGE_PIXELS / 1e6:.0f})")


def bomb_words(name: str, err: Image.DecompressionBombError) -> str:
    """PIL's bomb guard fires inside Image.open, before our header check: say the same thing."""
    import re

    claimed = re.search(r"\((\d+) pixels\)", str(err))
    pixels = f"{int(claimed.group(1)):,} pixels; " if claimed else ""
    return f"{name} is too large to be checked ({pixels}the limit is {MAX_IMAGE_PIXELS / 1e6:.0f} megapixels)"


@contextmanager
def open_image(path: str | Path, name: str | None = None) -> Iterator[Image.Image]:
    """``Image.open`` with the file-size and pixel limits checked before any pixel is decoded."""
    path = Path(path)
    name = name or path.name
    check_image_bytes(path.stat().st_size, name)
    try:
        im = Image.open(path)
    except Image.DecompressionBombError as e:  # PIL's own guard, for headers past 179 MP
        raise UploadError(bomb_words(name, e)) from e
    with im:
        check_image_header(im, name)
        yield im


# --- zips -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ZipEntry:
    """One image inside an uploaded zip, read only when it is decoded (an audit holds one at a time)."""

    archive: Path
    member: str

    def read_bytes(self) -> bytes:
        with zipfile.ZipFile(self.archive) as zf:
            info = zf.getinfo(self.member)
            check_image_bytes(info.file_size, f"{self.archive.name}/{self.member}")
            return zf.read(info)


def is_archive_junk(name: str) -> bool:
    """macOS resource forks (__MACOSX/, ._name) and hidden files: in archives, never data."""
    return any(p == "__MACOSX" or p.startswith(".") for p in PurePosixPath(name).parts)


def is_image_name(name: str) -> bool:
    return PurePosixPath(name).suffix.lower() in IMAGE_EXTENSIONS


def _is_link(info: zipfile.ZipInfo) -> bool:
    # Unix mode bits live in the high 16 bits of external_attr; zip has no other way to say "link".
    return stat.S_ISLNK(info.external_attr >> 16)


def _is_unsafe_path(name: str) -> bool:
    """Absolute, drive-letter or '..' paths: extracted naively they write outside the target folder."""
    posix = name.replace("\\", "/")
    return posix.startswith("/") or (len(posix) > 1 and posix[1] == ":") or ".." in PurePosixPath(posix).parts


def check_zip(zf: zipfile.ZipFile, name: str, max_files: int) -> list[zipfile.ZipInfo]:
    """The image entries of an uploaded zip, after checking the whole directory; UploadError otherwise.

    Checked from the central directory alone, before anything is inflated: unsafe paths and links
    refuse the whole archive (it was made to attack, not to share images); so do too many images, a
    total past MAX_ZIP_TOTAL_BYTES, and any entry that inflates more than MAX_ZIP_RATIO times.
    """
    infos = zf.infolist()
    for info in infos:
        if _is_unsafe_path(info.filename):
            raise UploadError(f"{name} was refused: it holds an unsafe path ({info.filename!r}); zips with "
                              "absolute or '..' paths are not opened")
        if _is_link(info):
            raise UploadError(f"{name} was refused: it holds a symbolic link ({info.filename!r}); zips with "
                              "links are not opened")
    total = sum(i.file_size for i in infos)
    if total > MAX_ZIP_TOTAL_BYTES:
        raise UploadError(f"{name} unpacks to {total / 2**30:.1f} GB; the limit is {MAX_ZIP_TOTAL_BYTES // 2**30} GB")
    for info in infos:
        if info.file_size > RATIO_EXEMPT_BYTES and info.file_size > MAX_ZIP_RATIO * max(info.compress_size, 1):
            raise UploadError(f"{name} was refused as a zip bomb: {info.filename!r} inflates "
                              f"{info.file_size / max(info.compress_size, 1):,.0f}x (the limit is {MAX_ZIP_RATIO}x)")
    images = [i for i in infos if not i.is_dir() and not is_archive_junk(i.filename) and is_image_name(i.filename)]
    if len(images) > max_files:
        raise UploadError(f"{name} holds {len(images):,} images; the limit is {max_files:,}")
    # A single empty or oversized image is that file's problem, not the archive's: it is refused
    # when read (an audit row, a skipped training image), and the rest are used.
    return images


def nested_zips(zf: zipfile.ZipFile) -> list[str]:
    """Zips inside the zip: never opened, but named when a zip turns out to hold no images."""
    return [i.filename for i in zf.infolist() if i.filename.lower().endswith(".zip")]


def open_zip(path: str | Path) -> zipfile.ZipFile:
    path = Path(path)
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        raise UploadError(f"{path.name} is not a readable zip archive ({type(err).__name__}: {err})") from err


def zip_image_entries(path: str | Path, max_files: int = MAX_AUDIT_FILES) -> list[tuple[str, ZipEntry]]:
    """(display name, lazy entry) for each image in an uploaded zip, checked by check_zip."""
    path = Path(path)
    with open_zip(path) as zf:
        images = check_zip(zf, path.name, max_files)
        if not images and nested_zips(zf):
            raise UploadError(f"{path.name} holds no images, only zips inside it ({nested_zips(zf)[0]}, ...); "
                              "zips inside zips are not opened: unpack them and upload the images")
        return [(f"{path.name}/{i.filename}", ZipEntry(path, i.filename)) for i in images]


def extract_images(path: str | Path, dest: str | Path, max_files: int = MAX_TRAIN_FILES) -> int:
    """Write the image entries of a checked zip under ``dest`` and nothing else; returns how many.

    Only image files are written (no links, no other members, none past MAX_ZIP_ENTRY_BYTES), each to
    a path proved to lie inside ``dest``, copied in chunks so no entry is ever whole in memory.
    """
    path, dest = Path(path), Path(dest).resolve()
    with open_zip(path) as zf:
        images = check_zip(zf, path.name, max_files)
        for info in images:
            if info.file_size > MAX_ZIP_ENTRY_BYTES:
                continue  # would be refused when read (open_image); never written
            target = (dest / info.filename).resolve()
            if dest not in target.parents:  # check_zip refused such names; this is the belt to its braces
                raise UploadError(f"{path.name} was refused: {info.filename!r} would land outside the dataset folder")
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(target, "wb") as out:
                shutil.copyfileobj(src, out, 1 * MB)
    return len(images)


# --- folders that uploads fill ----------------------------------------------------------------


def prune_folder(folder: str | Path, keep: int, max_age_s: float | None = None) -> list[Path]:
    """Delete all but the ``keep`` most recently modified entries of ``folder`` (and any older than
    ``max_age_s``); returns what was deleted. Keeps a cache of uploads from growing without bound."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    entries = sorted(folder.iterdir(), key=lambda p: p.stat().st_mtime, reverse=True)
    now = time.time()
    doomed = entries[keep:] + [p for p in entries[:keep] if max_age_s is not None and now - p.stat().st_mtime > max_age_s]
    for p in doomed:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            with suppress(FileNotFoundError):
                os.remove(p)
    return doomed

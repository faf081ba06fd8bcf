"""Browser screenshots of every tab after a real interaction, at 1280x800 and at phone width (390x844).

Headless Chromium driven by selenium + chromedriver: clicks an example, uploads files, trains a tiny
pair. Full-page PNGs go to $AMINT_ARTIFACTS/screenshots (default artifacts/screenshots/). Skipped when
chromium, chromedriver or selenium is missing.
"""

from __future__ import annotations

import base64
import os
import shutil
import time
import zipfile
from pathlib import Path

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

pytest.importorskip("gradio")
selenium = pytest.importorskip("selenium")
from selenium import webdriver  # noqa: E402
from selenium.common.exceptions import TimeoutException  # noqa: E402
from selenium.webdriver.chrome.options import Options  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from amint.splits import MembershipSplit  # noqa: E402

from .test_app import _imagefolder_zip, _png, app_env  # noqa: E402,F401  (app_env is a fixture)

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = [
    pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER), reason="chromium and chromedriver are needed"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]
SIZES = {"desktop": (1280, 800, False), "phone": (390, 844, True)}


def _out_dir() -> Path:
    base = Path(os.environ.get("AMINT_ARTIFACTS") or ROOT / "artifacts")
    out = base / "screenshots"
    out.mkdir(parents=True, exist_ok=True)
    return out


def _serve():
    """Launch the app in this process; yields its local URL, closes it after."""
    from amint.ui import build_app

    demo = build_app()
    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True)
    try:
        yield demo.local_url
    finally:
        demo.close()


@pytest.fixture(scope="module")
def url(app_env):
    yield from _serve()


class Page:
    """A Chromium tab at one window size, with the few actions the screenshots need."""

    def __init__(self, url: str, width: int, height: int, mobile: bool):
        opts = Options()
        opts.binary_location = CHROMIUM
        for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage", f"--window-size={max(width, 500)},{height}"):
            opts.add_argument(arg)
        self.d = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
        self.size = (width, height, mobile)
        self._emulate(height)
        self.d.get(url)
        self.wait_text("#pair-status", "·", 60)

    def _emulate(self, height: int) -> None:
        width, _, mobile = self.size
        # Chrome windows are at least 500 px wide; device emulation gives a real 390 px layout.
        self.d.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                               {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile})

    def wait(self, css: str, timeout: float = 30):
        return WebDriverWait(self.d, timeout).until(lambda d: d.find_element(By.CSS_SELECTOR, css))

    def wait_text(self, css: str, text: str, timeout: float = 30) -> None:
        def seen(d):  # textContent: also text scrolled out of view inside a box
            return any(text in (e.get_attribute("textContent") or "") for e in d.find_elements(By.CSS_SELECTOR, css))

        try:
            WebDriverWait(self.d, timeout).until(seen)
        except TimeoutException:
            self.shot("timeout")
            raise

    def click(self, css: str) -> None:
        el = self.wait(css)
        self.d.execute_script("arguments[0].scrollIntoView({block: 'center'}); arguments[0].click();", el)

    def click_text(self, css: str, text: str) -> None:
        el = next(e for e in self.d.find_elements(By.CSS_SELECTOR, css) if e.text.strip().startswith(text))
        self.d.execute_script("arguments[0].scrollIntoView({block: 'center'}); arguments[0].click();", el)

    def choose(self, css: str, option: str) -> None:
        """Open a gr.Dropdown with a real click and pick the option whose label starts with ``option``."""
        box = self.wait(f"{css} input")
        self.d.execute_script("arguments[0].scrollIntoView({block: 'center'});", box)
        box.click()
        self.wait(f'[role=option][aria-label^="{option}"]').click()

    def tab(self, tab_id: str) -> None:
        """Select a tab; on a narrow screen Gradio may have moved it into the "More tabs" menu."""
        button = self.d.find_element(By.ID, f"tab-{tab_id}-button")
        if button.is_displayed():
            button.click()
        else:
            self.d.find_element(By.CSS_SELECTOR, 'button[aria-label="More tabs"]').click()
            self.click_text(".overflow-dropdown button", tab_id.capitalize())
        WebDriverWait(self.d, 10).until(lambda d: d.find_element(By.ID, f"tab-{tab_id}").is_displayed())
        time.sleep(0.3)

    def upload(self, css: str, paths: list[Path]) -> None:
        self.wait(f"{css} input[type=file]").send_keys("\n".join(map(str, paths)))

    def type(self, css: str, text: str) -> None:
        el = self.wait(css)
        self.d.execute_script("arguments[0].scrollIntoView({block: 'center'});", el)
        el.send_keys(Keys.CONTROL, "a")
        el.send_keys(text, Keys.TAB)

    def settle(self) -> None:
        """Wait for running events (progress spinners) and images to finish."""
        WebDriverWait(self.d, 60).until(lambda d: not d.find_elements(By.CSS_SELECTOR, ".eta-bar, .progress-bar"))
        self._images_loaded(30)
        # Toasts (e.g. the CPU warning) are transient; close them so they do not cover the header.
        self.d.execute_script("document.querySelectorAll('.toast-close').forEach(b => b.click())")
        time.sleep(0.3)

    def _images_loaded(self, timeout: float) -> None:
        # Lazy images below the fold load only once the viewport reaches them (see shot()).
        WebDriverWait(self.d, timeout).until(lambda d: d.execute_script(
            "return [...document.images].every(i => i.complete || i.loading === 'lazy')"))

    def verify_first_example(self, name: str) -> Path:
        """Verify: click the first example; the verdict, plots and maps appear."""
        self.click("#verify-examples .thumbnail-item")
        self.wait_text("#verify-verdict", "verdict is", 60)
        self.settle()
        return self.shot(name)

    def audit(self, files: list, seen: str, name: str) -> Path:
        """Audit: upload images (or zips), run, wait for the dataset-level answer."""
        self.tab("audit")
        self.upload("#audit-files", files)
        self.wait_text("#audit-files", seen, 30)
        self.click("#audit-button")
        self.wait_text("#audit-summary", "flagged", 60)
        self.settle()
        return self.shot(name)

    def edit_and_watch(self, edit: str, strength: int, name: str) -> Path:
        """Verify tab, after a verdict: pick an edit and its strength, apply it, wait for held / changed."""
        self.choose("#edit-name", edit)
        self.type("#edit-strength input[type=number]", str(strength))
        self.click("#edit-button")
        self.wait_text("#edit-result", "verdict", 60)
        self.settle()
        self.d.execute_script("document.querySelector('#verify-edit').scrollIntoView({block: 'start'})")
        return self.shot(name)

    def compare(self, other: str, name: str) -> Path:
        """Verify tab: open "Compare with another pair", name the second pair, compare."""
        self.click_text("button", "Compare with another pair")
        self.type("#compare-pair input", other)
        self.d.find_element(By.CSS_SELECTOR, "#verify-compare .prose").click()  # close the option list
        self.click("#compare-button")
        self.wait_text("#compare-result", "aMINT verdict", 60)
        self.settle()
        return self.shot(name)

    def report(self, path: Path, name: str) -> Path:
        """An audit report as the person who downloaded it opens it (a local file, nothing fetched)."""
        self.d.get(path.as_uri())
        self.wait_text("h1", "aMINT audit report", 30)
        return self.shot(name)

    def keyboard_reaches(self, wanted: set[str], presses: int = 120) -> set[str]:
        """Tab through the page from the top; the element ids (or their nearest ancestor's) that got focus."""
        self.d.execute_script("document.activeElement && document.activeElement.blur(); window.scrollTo(0, 0)")
        seen: set[str] = set()
        body = self.d.find_element(By.TAG_NAME, "body")
        body.send_keys(Keys.TAB)
        for _ in range(presses):
            seen.add(self.d.execute_script("const e = document.activeElement.closest('[id]'); return e ? e.id : ''"))
            if wanted <= seen:
                break
            self.d.switch_to.active_element.send_keys(Keys.TAB)
        return seen

    def model_tab(self, name: str) -> Path:
        self.tab("model")
        self.wait_text("#model-card", "aMINT pair", 30)
        self.settle()
        return self.shot(name)

    def shot(self, name: str) -> Path:
        """Full-page PNG: the viewport is stretched to the page height for the capture."""
        width, height, _ = self.size
        full = self.d.execute_script("return Math.max(document.body.scrollHeight, document.documentElement.scrollHeight)")
        self._emulate(min(int(full), 6000))
        time.sleep(0.5)
        try:  # now every image is in the (stretched) viewport
            WebDriverWait(self.d, 10).until(lambda d: d.execute_script(
                "return [...document.images].every(i => i.complete)"))
        except TimeoutException:
            pass
        data = self.d.execute_cdp_cmd("Page.captureScreenshot", {"format": "png"})["data"]
        self._emulate(height)
        path = _out_dir() / f"{name}-{width}x{height}.png"
        path.write_bytes(base64.b64decode(data))
        return path

    def quit(self) -> None:
        self.d.quit()


@pytest.fixture(scope="module")
def uploads(tiny_pair, synthetic, tmp_path_factory, app_env):
    """A few member images for the audit, and a small ImageFolder zip for training."""
    pair, _ = tiny_pair
    tmp = tmp_path_factory.mktemp("shots")
    split = MembershipSplit.from_config(pair.config.split)
    members = [_png(synthetic.train_images[i], tmp / f"photo_{i}.png") for i in split.eval_members[:24].tolist()]
    archive = tmp / "members.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for p in members[8:]:
            zf.write(p, f"set/{p.name}")
    # A second pair for the comparison view: the same pair under another name (so the two agree).
    pair.save_pretrained(Path(os.environ["AMINT_MODELS_DIR"]) / "tiny-copy")
    return {"audit": [*members[:8], archive], "train": _imagefolder_zip(tmp / "shapes.zip")}


@pytest.mark.parametrize("size", list(SIZES))
def test_screenshots(url, uploads, size):
    width, height, mobile = SIZES[size]
    page = Page(url, width, height, mobile)
    shots = []
    try:
        shots.append(page.verify_first_example("1-verify"))
        shots.append(page.edit_and_watch("crop", 75, "1b-edit"))
        shots.append(page.compare("tiny-copy", "1c-compare"))
        shots.append(page.audit(uploads["audit"], "members", "2-audit"))

        # Train: an uploaded ImageFolder zip, a tiny configuration; on the phone only fill the form.
        page.tab("train")
        page.choose("#train-dataset", "my images")
        page.upload("#train-upload", [uploads["train"]])
        page.wait_text("#train-upload", "KB", 30)
        page.click_text("button", "More options")
        page.type("#train-members input", "48")
        page.type("#train-external input", "48")
        page.type("#train-calibration input", "16")
        page.type("#train-options textarea, #train-options input", '{"channels": [16, 16, 32, 32]}')
        page.type("#train-epochs input[type=number]", "1")
        page.type("#train-batch input[type=number]", "16")
        page.type("#train-name textarea, #train-name input", f"screenshot-{size}")
        if size == "desktop":
            page.click("#train-start")
            page.wait_text("#train-status", "Done", 120)
            page.settle()
        shots.append(page.shot("3-train"))

        # Model: the selected pair (the one just trained on the desktop run).
        shots.append(page.model_tab("4-model"))

        page.tab("about")
        page.wait_text("#about-text", "Limits", 10)
        shots.append(page.shot("5-about"))
    finally:
        page.quit()
    for path in shots:
        assert path.stat().st_size > 10_000, path


DEFAULT_PAIR = ROOT / "models" / "fashion-mnist-resnet18"
PASSIVE_PAIR = next((p for p in (ROOT / "models" / "fashion-mnist-resnet18-passive",
                     ROOT / "benchmarks" / "results" / "passive-pair") if (p / "model.safetensors").is_file()),
                    ROOT / "models" / "fashion-mnist-resnet18-passive")


@pytest.fixture(scope="module")
def default_url(tmp_path_factory):
    """The app on the shipped default pair and examples (a scratch models dir, so nothing is written to models/)."""
    if not (DEFAULT_PAIR / "model.safetensors").is_file():
        pytest.skip("the default pair is not in models/")
    models = tmp_path_factory.mktemp("models")
    (models / DEFAULT_PAIR.name).symlink_to(DEFAULT_PAIR, target_is_directory=True)
    if (PASSIVE_PAIR / "model.safetensors").is_file():  # made by benchmarks/train_default_pair.py --only passive
        (models / "passive-control").symlink_to(PASSIVE_PAIR, target_is_directory=True)
    mp = pytest.MonkeyPatch()
    mp.setenv("AMINT_MODELS_DIR", str(models))
    mp.setenv("AMINT_EXAMPLES_DIR", str(ROOT / "examples"))
    try:
        yield from _serve()
    finally:
        mp.undo()


def _default_pair_report(files: list[Path], tmp_path: Path) -> Path:
    """The HTML report the Audit tab offers for these files (written by the same library call)."""
    from amint.audit import audit_images, expand_uploads
    from amint.pair import AuditedPair
    from amint.report import write_audit_report

    pair = AuditedPair.from_pretrained(DEFAULT_PAIR)
    result = audit_images(pair, expand_uploads(files))
    return write_audit_report(pair, result, DEFAULT_PAIR.name, DEFAULT_PAIR, tmp_path / "audit-report.html")


@pytest.mark.parametrize("size", list(SIZES))
def test_screenshots_default_pair(default_url, size, tmp_path):
    width, height, mobile = SIZES[size]
    page = Page(default_url, width, height, mobile)
    shots = []
    members = sorted((ROOT / "examples").glob("member_*.png"))[:6]
    try:
        shots.append(page.verify_first_example("default-1-verify"))
        shots.append(page.edit_and_watch("crop", 75, "default-1b-edit"))
        if (PASSIVE_PAIR / "model.safetensors").is_file():
            shots.append(page.compare("passive-control", "default-1c-compare"))
        shots.append(page.audit(members, "member_", "default-2-audit"))
        report = _default_pair_report(members, tmp_path)
        shots.append(page.report(report, "default-2b-report"))
        page.d.get(default_url)
        page.wait_text("#pair-status", "·", 60)
        page.tab("train")
        page.settle()
        shots.append(page.shot("default-3-train"))
        shots.append(page.model_tab("default-4-model"))
    finally:
        page.quit()
    for path in shots:
        assert path.stat().st_size > 10_000, path


def test_keyboard_reaches_every_control_and_runs_an_example(default_url):
    page = Page(default_url, *SIZES["desktop"])
    try:
        wanted = {"verify-button", "edit-name", "edit-strength", "edit-button", "verify-examples", "tab-audit-button"}
        seen = page.keyboard_reaches(wanted)
        assert wanted <= seen, wanted - seen
        # An example picked with the keyboard alone: focus its thumbnail by tabbing, press Enter.
        page.d.execute_script("window.scrollTo(0, 0)")
        for _ in range(200):
            page.d.switch_to.active_element.send_keys(Keys.TAB)
            if page.d.execute_script("return document.activeElement.classList.contains('thumbnail-item')"):
                break
        page.d.switch_to.active_element.send_keys(Keys.ENTER)
        page.wait_text("#verify-verdict", "verdict is", 60)
    finally:
        page.quit()

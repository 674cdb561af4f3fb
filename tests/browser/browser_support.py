"""Headless Chromium for the browser tests (Debian's chromium + chromedriver, driven by selenium).

Test modules import the fixtures from here (no conftest, so the test folders
stay free of module-name clashes). The browser is skipped only where it is
absent and CI is not set; on CI (CI=true) a missing browser fails loudly,
since .ci/install_browser.sh should have installed it.

Screenshots go to $ASVA_TEST_ARTIFACTS (default: the pytest temp folder's
``artifacts``); ``ASVA_TEST_ARTIFACTS=docs/screenshots`` refreshes the docs.
"""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import threading
import time
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
# Without the networking switches Chromium keeps calling home and floods a closed network.
CHROME_FLAGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
    "--no-first-run", "--no-default-browser-check", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-extensions",
    "--disable-features=Translate,MediaRouter,OptimizationHints", "--metrics-recording-only",
    "--autoplay-policy=no-user-gesture-required", "--window-size=1200,900", "--hide-scrollbars",
    "--force-device-scale-factor=1",
]
# Replaces alert/confirm/prompt before any page script runs: a call is recorded, never shown.
TRAP_DIALOGS = """
window.__dialogs = [];
['alert', 'confirm', 'prompt'].forEach(function (name) {
  window[name] = function (msg) { window.__dialogs.push(name + ':' + String(msg)); };
});
"""


def browser_missing() -> list[str]:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).exists()]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("python package selenium")
    return missing


def require_browser():
    missing = browser_missing()
    if not missing:
        return
    msg = f"headless browser tests need {', '.join(missing)} (run .ci/install_browser.sh)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail("CI=true but " + msg, pytrace=False)
    pytest.skip(msg)


@pytest.fixture(scope="session")
def browser(tmp_path_factory):
    require_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for f in CHROME_FLAGS:
        opts.add_argument(f)
    opts.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # an explicit driver path: selenium's manager would try to download one
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(30)
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": TRAP_DIALOGS})
    yield driver
    driver.quit()


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory) -> Path:
    where = os.environ.get("ASVA_TEST_ARTIFACTS")
    path = Path(where) if where else tmp_path_factory.getbasetemp() / "artifacts"
    path.mkdir(parents=True, exist_ok=True)
    return path


def console_errors(driver) -> list[str]:
    """Errors logged since the last call (reading the log empties it)."""
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def wait_for(driver, script: str, timeout: float = 10.0, *args):
    """Poll a JS expression (``return ...``) until it is truthy; return its value."""
    deadline = time.monotonic() + timeout
    while True:
        value = driver.execute_script(script, *args)
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for: {script}")
        time.sleep(0.05)


def screenshot(driver, path: Path, height: int | None = None) -> Path:
    """A viewport screenshot, optionally with the window resized to show ``height`` pixels."""
    if height:
        driver.set_window_size(1200, height)
    driver.save_screenshot(str(path))
    driver.set_window_size(1200, 900)
    return path


PLAY_AND_MEASURE = """
const [video, done] = [arguments[0], arguments[arguments.length - 1]];
const t0 = video.currentTime;
video.muted = false;
video.play().then(() => setTimeout(() => done({
    readyState: video.readyState, duration: video.duration, t0: t0, t1: video.currentTime,
    audioBytes: video.webkitAudioDecodedByteCount, videoBytes: video.webkitVideoDecodedByteCount,
    error: video.error && video.error.code, paused: video.paused}), 700),
  e => done({error: String(e)}));
"""


def play_video(driver, video) -> dict:
    driver.set_script_timeout(15)
    return driver.execute_async_script(PLAY_AND_MEASURE, video)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def serve():
    """``serve(folder)`` -> base URL of the stdlib static server (what ``python -m http.server`` runs)."""
    servers = []

    def start(folder: Path) -> str:
        handler = functools.partial(_QuietHandler, directory=str(folder))
        httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        servers.append(httpd)
        return f"http://127.0.0.1:{httpd.server_address[1]}/"

    yield start
    for httpd in servers:
        httpd.shutdown()
        httpd.server_close()

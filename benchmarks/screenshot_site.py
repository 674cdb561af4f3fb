"""Screenshots of a leaderboard built from real run folders, for the docs.

    python benchmarks/screenshot_site.py RUN_DIR... --out docs/screenshots/board-synth-real.png

Builds the site with `asva-bench leaderboard build` into a temporary folder,
opens its first board page (saved as OUT) and the board's first model page
(saved as OUT with ``-model`` before the suffix) in headless Debian Chromium. Needs chromium, chromedriver and selenium
(.ci/install_browser.sh).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "browser"))

from browser_support import CHROMEDRIVER, CHROME_FLAGS, TRAP_DIALOGS  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--height", type=int, default=900)
    args = ap.parse_args(argv)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    from asva_bench.leaderboard.build import build_site
    with tempfile.TemporaryDirectory() as tmp:
        site = Path(tmp) / "site"
        build_site([str(r) for r in args.runs], site, progress=False)
        opts = webdriver.ChromeOptions()
        for f in CHROME_FLAGS:
            opts.add_argument(f)
        opts.add_argument(f"--user-data-dir={Path(tmp) / 'profile'}")
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
        try:
            driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": TRAP_DIALOGS})
            driver.set_window_size(1200, args.height)
            driver.get((site / "index.html").as_uri())
            driver.get(driver.find_element("css selector", "td a").get_attribute("href"))   # the board
            args.out.parent.mkdir(parents=True, exist_ok=True)
            driver.save_screenshot(str(args.out))
            driver.get(driver.find_element("css selector", "td a").get_attribute("href"))   # its first model
            driver.save_screenshot(str(args.out.with_name(args.out.stem + "-model" + args.out.suffix)))
        finally:
            driver.quit()
    print(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

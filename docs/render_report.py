"""Open a comparison report.html in headless Chromium, check it renders, save a screenshot.

Checks that the headline is shown and that at least one annotated screenshot in the flips
section has decoded (an <img> with a nonzero naturalWidth), then writes a PNG of the page.
Needs Playwright (not a project dependency) and a Chromium: Playwright's own, or any installed
one given with --chromium (e.g. Debian's /usr/bin/chromium). See docs/README.md.

    python docs/render_report.py REPORT.html --png docs/report-screenshot.png
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from playwright.sync_api import sync_playwright

CHECK = """() => {
  const headline = document.querySelector('#headline');
  const imgs = Array.from(document.querySelectorAll('#flips figure.flip img'));
  return {
    headline: headline ? headline.innerText : null,
    flipImages: imgs.length,
    decoded: imgs.filter(i => i.complete && i.naturalWidth > 0).length,
  };
}"""

COMPACT_CSS = "#slices, #flips figure.flip ~ figure.flip { display: none; }"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path, help="the report.html to open")
    parser.add_argument("--png", type=Path, help="write a screenshot of the page here")
    parser.add_argument(
        "--chromium",
        default=shutil.which("chromium") or shutil.which("chromium-browser"),
        help="Chromium executable (default: chromium on PATH, else Playwright's own)",
    )
    parser.add_argument(
        "--compact",
        action="store_true",
        help="for the PNG only (after the checks): hide the slice tables and all flips but the "
        "first, so the headline and one annotated screenshot fit in one picture",
    )
    args = parser.parse_args(argv)

    with sync_playwright() as pw:
        browser = pw.chromium.launch(headless=True, executable_path=args.chromium or None)
        page = browser.new_page(viewport={"width": 1200, "height": 1600})
        # file:// page, no network: everything in the report is inline.
        page.goto(args.report.resolve().as_uri(), wait_until="load")
        result = page.evaluate(CHECK)
        if args.png:
            if args.compact:
                page.add_style_tag(content=COMPACT_CSS)
            page.screenshot(path=str(args.png), full_page=True)
        browser.close()

    print(f"headline: {result['headline']!r}")
    print(f"flip screenshots: {result['decoded']} of {result['flipImages']} decoded")
    if not result["headline"] or " vs " not in result["headline"]:
        print("FAIL: no headline rendered", file=sys.stderr)
        return 1
    if result["decoded"] < 1:
        print("FAIL: no annotated screenshot rendered in the flips section", file=sys.stderr)
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())

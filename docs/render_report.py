"""Open a comparison report.html in headless Chromium, check it renders, save a screenshot.

The same check as the browser test (tests/test_report_browser.py), through the same driver
(tests/report_browser.py): the headline is shown, the delta chart and every flip's annotated
screenshot have decoded and are displayed, and there are no console errors, page errors or
requests leaving the file. With --png it writes a full-page PNG. Needs the dev extra
(Playwright) and an installed Chromium (Debian's /usr/bin/chromium; see docs/development.md).

    .venv/bin/python docs/render_report.py REPORT.html --png docs/report-screenshot.png
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from report_browser import find_chromium, inspect_report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path, help="the report.html to open")
    parser.add_argument("--png", type=Path, help="write a screenshot of the page here")
    parser.add_argument(
        "--chromium",
        default=find_chromium(),
        help="Chromium executable (default: chromium on PATH or /usr/bin/chromium, "
        "else Playwright's own download)",
    )
    parser.add_argument(
        "--compact",
        action="store_true",
        help="for the PNG only (after the checks): hide the slice tables and all flips but the "
        "first, so the headline and one annotated screenshot fit in one picture",
    )
    args = parser.parse_args(argv)

    check = inspect_report(args.report, chromium=args.chromium, png=args.png, compact=args.compact)
    decoded = [i for i in check.flip_images if i["naturalWidth"] > 0]
    print(f"Chromium {check.browser_version}")
    print(f"headline: {check.headline!r}")
    print(f"chart: {'decoded' if check.chart and check.chart[0]['naturalWidth'] else 'MISSING'}")
    print(f"flip screenshots: {len(decoded)} of {check.flip_figures} flips shown decoded")
    problems = check.problems()
    if check.flip_figures and not decoded:
        problems.append("no annotated screenshot rendered in the flips section")
    for problem in problems:
        print(f"FAIL: {problem}", file=sys.stderr)
    if problems:
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())

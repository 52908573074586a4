"""Open a comparison ``report.html`` in headless Chromium and say what a reader would see.

One driver for two callers: ``tests/test_report_browser.py`` (the check in CI) and
``docs/render_report.py`` (the same check by hand, plus the documentation screenshot). It drives
an installed Chromium (Debian's ``/usr/bin/chromium``) through Playwright, whose bundled driver
needs no browser download, and collects console messages, page errors, failed and non-local
requests, and from the DOM: the headline, every ``<img>`` (decoded size, rendered size, where it
sits) and the flips section's own count.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Flags that work as root on a closed network: no sandbox (Playwright adds --no-sandbox by
#: default), no GPU, and none of Chromium's background connections, which the network refuses.
CHROMIUM_ARGS = (
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
CHART_ALT = "accuracy delta per group with intervals"

_DOM = """() => {
  const text = (sel) => { const e = document.querySelector(sel); return e ? e.innerText : null; };
  const images = Array.from(document.images).map((img) => {
    const box = img.getBoundingClientRect();
    const style = getComputedStyle(img);
    return {
      alt: img.alt,
      src: img.src.startsWith('data:') ? img.src : img.src.slice(0, 200),
      complete: img.complete,
      naturalWidth: img.naturalWidth,
      naturalHeight: img.naturalHeight,
      shownWidth: box.width,
      shownHeight: box.height,
      visible: style.display !== 'none' && style.visibility !== 'hidden',
      inFlip: img.closest('#flips figure.flip') !== null,
    };
  });
  return {
    title: document.title,
    headline: text('#headline'),
    flipsHeading: text('#flips h2'),
    flipFigures: document.querySelectorAll('#flips figure.flip').length,
    placeholders: document.querySelectorAll('#flips .placeholder').length,
    scripts: document.scripts.length,
    images,
  };
}"""

COMPACT_CSS = "#slices, #flips figure.flip ~ figure.flip { display: none; }"
"""For a picture of the top of the report: hide the slice tables and every flip but the first."""


def find_chromium() -> str | None:
    """An installed Chromium: ``chromium`` (Debian) or ``chromium-browser`` on PATH."""
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").is_file() else None


@dataclass
class PageCheck:
    """What the browser showed of one report."""

    title: str
    headline: str | None
    flips_heading: str | None
    flip_figures: int
    placeholders: int
    scripts: int
    images: list[dict[str, Any]]
    console: list[tuple[str, str]] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    outside_requests: list[str] = field(default_factory=list)
    browser_version: str = ""

    @property
    def chart(self) -> list[dict[str, Any]]:
        return [i for i in self.images if i["alt"] == CHART_ALT]

    @property
    def flip_images(self) -> list[dict[str, Any]]:
        return [i for i in self.images if i["inFlip"]]

    @property
    def console_errors(self) -> list[str]:
        return [f"{kind}: {text}" for kind, text in self.console if kind in ("error", "assert")]

    def problems(self) -> list[str]:
        """Everything a reader would miss or that went wrong; empty when the page is fine."""
        found: list[str] = []
        if not self.headline or " vs " not in self.headline:
            found.append(f"no headline rendered (#headline: {self.headline!r})")
        if len(self.chart) != 1:
            found.append(f"expected one delta chart image, found {len(self.chart)}")
        for img in self.images:
            if not (img["complete"] and img["naturalWidth"] > 0 and img["naturalHeight"] > 0):
                found.append(f"image not decoded: {img['alt']!r} ({img['src'][:60]}...)")
            elif not (img["visible"] and img["shownWidth"] > 0 and img["shownHeight"] > 0):
                found.append(f"image decoded but not shown: {img['alt']!r}")
        if len(self.flip_images) + self.placeholders != self.flip_figures:
            found.append(
                f"{self.flip_figures} flip figures but {len(self.flip_images)} images and "
                f"{self.placeholders} placeholders"
            )
        found += [f"console {line}" for line in self.console_errors]
        found += [f"page error: {e}" for e in self.page_errors]
        found += [f"request failed: {r}" for r in self.failed_requests]
        found += [f"request outside the file: {r}" for r in self.outside_requests]
        return found


def inspect_report(
    report: Path,
    *,
    chromium: str | None = None,
    png: Path | None = None,
    compact: bool = False,
    width: int = 1200,
    height: int = 1600,
) -> PageCheck:
    """Load ``report`` (a file, opened as file://) in headless Chromium, read the DOM, and with
    ``png`` save a full-page screenshot (``compact``: the top of the report only, see
    :data:`COMPACT_CSS`; the DOM is read before that style is added). ``chromium``: an
    executable; ``None`` for :func:`find_chromium`, else Playwright's own download."""
    from playwright.sync_api import sync_playwright

    executable = chromium or find_chromium()
    console: list[tuple[str, str]] = []
    page_errors: list[str] = []
    failed: list[str] = []
    outside: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            headless=True, executable_path=executable, args=list(CHROMIUM_ARGS)
        )
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.on("console", lambda m: console.append((m.type, m.text)))
            page.on("pageerror", lambda e: page_errors.append(str(e)))
            page.on("requestfailed", lambda r: failed.append(f"{r.url[:200]} ({r.failure})"))
            page.on(
                "request",
                lambda r: None if r.url.startswith(("file:", "data:")) else outside.append(r.url),
            )
            page.goto(Path(report).resolve().as_uri(), wait_until="load")
            dom = page.evaluate(_DOM)
            if png is not None:
                if compact:
                    page.add_style_tag(content=COMPACT_CSS)
                page.screenshot(path=str(png), full_page=True)
            version = browser.version
        finally:
            browser.close()
    return PageCheck(
        title=dom["title"],
        headline=dom["headline"],
        flips_heading=dom["flipsHeading"],
        flip_figures=dom["flipFigures"],
        placeholders=dom["placeholders"],
        scripts=dom["scripts"],
        images=dom["images"],
        console=console,
        page_errors=page_errors,
        failed_requests=failed,
        outside_requests=outside,
        browser_version=version,
    )

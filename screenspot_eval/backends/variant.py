"""What the engine says about its embedder, and the check that it is what was asked for.

Pure: the report is produced inside the engine (``backends.vllm.probe``) and travels back as a
dict; the check and the model live here so run records and the HTTP backend can use them
without importing vLLM.
"""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict

from screenspot_eval.errors import BackendFailure

Variant = Literal["pre", "post", "native"]
#: Every variant, in the order commands list them (the one place they are spelled out).
VARIANTS: tuple[Variant, ...] = get_args(Variant)
#: The placements our embedder can switch between in place (``native`` is upstream's class).
SWITCHABLE: frozenset[str] = frozenset({"pre", "post"})
MeasuredPlacement = Literal["pre", "post", "unknown"]
PLUGIN_MODEL_CLASS = "Gemma4WithSelectableEmbedder"
#: Each vLLM architecture the plugin covers (the name of vLLM's class) -> our class for it:
#: the tower-based family and the encoder-free 12B, which runs the same embedder class.
PLUGIN_CLASS_FOR: dict[str, str] = {
    "Gemma4ForConditionalGeneration": PLUGIN_MODEL_CLASS,
    "Gemma4UnifiedForConditionalGeneration": "Gemma4UnifiedWithSelectableEmbedder",
}
PLUGIN_MODEL_CLASSES: tuple[str, ...] = tuple(PLUGIN_CLASS_FOR.values())
COVERED_UPSTREAM_CLASSES: tuple[str, ...] = tuple(PLUGIN_CLASS_FOR)
#: The embedder every variant check needs: the one images go through.
VISION_EMBEDDER = "embed_vision"
PLUGIN_EMBEDDER_CLASS = "SelectableNormEmbedder"
#: ``model_class`` of the report for a server that cannot say what it runs (no embedder route).
UNVERIFIED_MODEL_CLASS = "unknown (server without the screenspot embedder route)"


class EmbedderInfo(BaseModel):
    """One multimodal embedder (vision or audio) as found in the loaded model."""

    model_config = ConfigDict(frozen=True)

    attribute: str
    class_path: str
    declared_placement: str | None  # what our embedder's buffer says; None for upstream's
    measured_placement: MeasuredPlacement  # from running it on a probe input
    in_dim: int
    out_dim: int
    norm_width: int | None
    rel_error_vs_pre: float
    rel_error_vs_post: float
    hf_reference_max_abs_diff: float | None = None

    @property
    def is_plugin_embedder(self) -> bool:
        return self.class_path.endswith(PLUGIN_EMBEDDER_CLASS)


class EmbedderReport(BaseModel):
    """The engine's own account of the embedder it runs; stored in every run manifest."""

    model_config = ConfigDict(frozen=True)

    model_class: str
    config_variant: Variant  # the variant the engine's HF config carries
    embedders: tuple[EmbedderInfo, ...]
    vllm_version: str
    vllm_plugins_env: str | None  # VLLM_PLUGINS as the engine process saw it
    #: Embedders the model has but vLLM did not load (e.g. ``embed_audio`` with audio limited
    #: to 0 per prompt): never probed, never switched, never called.
    not_loaded: tuple[str, ...] = ()

    @property
    def plugin_active(self) -> bool:
        return self.model_class.rsplit(".", 1)[-1] in PLUGIN_MODEL_CLASSES

    @property
    def architecture_covered(self) -> bool:
        """Is the engine's model class one the plugin replaces (or ours already)?"""
        name = self.model_class.rsplit(".", 1)[-1]
        return self.plugin_active or name in COVERED_UPSTREAM_CLASSES

    @property
    def effective_variant(self) -> str:
        """``pre``/``post`` when our embedder runs, ``native`` for upstream's untouched class."""
        if self.embedders and all(e.is_plugin_embedder for e in self.embedders):
            placements = {e.measured_placement for e in self.embedders}
            return placements.pop() if len(placements) == 1 else "mixed"
        return "native"


def unverified_report(vllm_version: str) -> EmbedderReport:
    """What a server without our route runs as far as anyone can tell: vLLM's native embedder."""
    return EmbedderReport(
        model_class=UNVERIFIED_MODEL_CLASS,
        config_variant="native",
        embedders=(),
        vllm_version=vllm_version,
        vllm_plugins_env=None,
    )


class VariantMismatchError(BackendFailure, RuntimeError):
    """The engine does not run the embedder that was asked for; evaluating would mislabel it."""


def check_variant(requested: Variant, report: EmbedderReport) -> None:
    """Raise ``VariantMismatchError`` with the reason unless the engine runs ``requested``."""
    if report.model_class == UNVERIFIED_MODEL_CLASS:
        if requested == "native":
            return
        raise VariantMismatchError(
            f"asked for embedder variant {requested!r}, but the server does not report a "
            "variant (no /screenspot/embedder route: a plain `vllm serve`), so it runs vLLM's "
            "native embedder as far as can be checked. Serve the model with screenspot_eval's "
            f"server and norm {requested!r}, or evaluate it as 'native'."
        )
    if requested == "native" and not report.architecture_covered:
        return  # a model without embedder variants (not Gemma 4) runs as it is
    if not any(e.attribute == VISION_EMBEDDER for e in report.embedders):
        missing = "not loaded" if VISION_EMBEDDER in report.not_loaded else "absent"
        raise VariantMismatchError(
            f"asked for embedder variant {requested!r}, but the loaded model's vision embedder "
            f"({VISION_EMBEDDER}) is {missing} ({report.model_class}); images need it"
        )
    if requested == "native":
        if report.plugin_active and report.config_variant != "native":
            raise VariantMismatchError(
                f"asked for 'native' but the engine config carries {report.config_variant!r}"
            )
        return
    if not report.architecture_covered:
        raise VariantMismatchError(
            f"asked for embedder variant {requested!r}, but the engine runs "
            f"{report.model_class}, an architecture the screenspot_eval plugin does not cover "
            f"(it covers {', '.join(COVERED_UPSTREAM_CLASSES)}); evaluate it as 'native'"
        )
    if not report.plugin_active:
        raise VariantMismatchError(
            f"asked for embedder variant {requested!r}, but the engine runs vLLM's own "
            f"{report.model_class} (measured placement: "
            f"{', '.join(e.measured_placement for e in report.embedders)}): the screenspot_eval "
            "vLLM plugin was not loaded in the engine process. Check that screenspot-eval is "
            "installed in the engine's Python environment and that VLLM_PLUGINS "
            f"(seen by the engine: {report.vllm_plugins_env!r}) is unset or includes "
            "'screenspot_eval_embedder'."
        )
    if report.config_variant != requested:
        raise VariantMismatchError(
            f"asked for {requested!r} but the engine config carries {report.config_variant!r}"
        )
    wrong = [e for e in report.embedders if e.measured_placement != requested]
    if wrong:
        details = "; ".join(f"{e.attribute} measured {e.measured_placement}" for e in wrong)
        raise VariantMismatchError(f"asked for {requested!r} but inside the engine: {details}")

"""The feature switches of each published Gemma 4 checkpoint family, for its tiny twin.

A twin switches on what its family's ``config.json`` switches on (each value below names its
source) and keeps every width tiny: the features, not the sizes, decide which of vLLM's code
paths run. Sources, read in December 2026 (reported; the 12B config was seen verbatim, the
others as restated by several agreeing third-party test fixtures):

- [12B]   ``google/gemma-4-12B`` config.json (revision 56820d7d), verbatim in a public log;
- [E2B] / [E4B] / [26B] / [31B]: ollama ``x/models/gemma4/gemma4_test.go`` (TestParseTextConfig*),
  ComfyUI's Gemma 4 config dataclasses, and ``official_size_config`` tests;
- [TPL]   the real chat templates (ollama ``model/renderers/testdata/gemma4_{e2b,31b}_chat_template``):
  26B and 31B (and, reportedly, 12B) open the answer with an empty thought channel when
  thinking is off; E2B and E4B do not.

Every field was checked against transformers 5.19's ``Gemma4TextConfig`` / ``Gemma4VisionConfig``
/ ``Gemma4AudioConfig`` and the ``Gemma4Unified*Config`` classes (``global_head_dim`` and
``num_global_key_value_heads`` are constructor arguments that become ``per_layer_config``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

DEFAULT_FAMILY = "tiny"


@dataclass(frozen=True)
class Family:
    """What a twin of one checkpoint family switches on."""

    name: str
    summary: str  # the features, for the README and ``tiny-model --help``
    hardware: str  # what the real checkpoint needs
    text: dict[str, Any] = field(default_factory=dict)  # Gemma4TextConfig switches
    vision: dict[str, Any] = field(default_factory=dict)  # vision config switches
    audio: bool = False  # an audio tower (E2B/E4B) or audio embedder (12B)
    unified: bool = False  # encoder-free Gemma4UnifiedForConditionalGeneration (12B)
    empty_thought_channel: bool = False  # [TPL]: the answer opens with an empty thought block

    @property
    def layer_types(self) -> list[str]:
        return list(self.text["layer_types"])


def pattern(sliding: int, blocks: int) -> list[str]:
    """``blocks`` x (``sliding`` sliding layers + 1 full layer): the last layer is full."""
    return (["sliding_attention"] * sliding + ["full_attention"]) * blocks


FAMILIES: dict[str, Family] = {
    DEFAULT_FAMILY: Family(
        name=DEFAULT_FAMILY,
        summary="dense, 2 layers, causal over images, no per-layer embeddings (the first twin)",
        hardware="any CPU",
        text={"layer_types": pattern(1, 1)},
    ),
    "e2b": Family(
        name="e2b",
        summary="per-layer embeddings, KV sharing, double-wide MLP, final softcap, 4:1 "
        "sliding pattern, causal over images, an audio tower",
        hardware="one 16 GB GPU",
        text={
            "layer_types": pattern(4, 2),  # [E2B] 4 sliding + 1 full (x7 in 35 layers)
            "hidden_size_per_layer_input": 16,  # [E2B] 256: per-layer embeddings on
            "num_kv_shared_layers": 5,  # [E2B] 20 of 35: the last layers reuse donors' KV
            "use_double_wide_mlp": True,  # [E2B] true
            "final_logit_softcapping": 30.0,  # [E2B] 30.0 (transformers' default is None)
            "num_attention_heads": 2,  # [E2B] 8 heads / 1 KV head
            "num_key_value_heads": 1,
            "use_bidirectional_attention": None,  # [E2B] null: causal over images
        },
        vision={"standardize": False, "use_clipped_linears": True},  # [E2B]
        audio=True,  # [E2B] audio_config set, output_proj_dims = text hidden size
    ),
    "e4b": Family(
        name="e4b",
        summary="as e2b with the 5:1 sliding pattern, 2 KV heads and no double-wide MLP",
        hardware="one 24 GB GPU",
        text={
            "layer_types": pattern(5, 2),  # [E4B] 5 sliding + 1 full (x7 in 42 layers)
            "hidden_size_per_layer_input": 16,  # [E4B] 256
            "num_kv_shared_layers": 6,  # [E4B] 18 of 42 (first shared layer 24)
            "use_double_wide_mlp": False,  # [E4B] false
            "final_logit_softcapping": 30.0,  # [E4B] 30.0
            "num_attention_heads": 4,  # [E4B] 8 heads / 2 KV heads
            "num_key_value_heads": 2,
            "use_bidirectional_attention": None,  # [E4B] null
        },
        vision={"standardize": False, "use_clipped_linears": True},  # [E4B] as E2B
        audio=True,  # [E4B] audio_config set
    ),
    "26b-a4b": Family(
        name="26b-a4b",
        summary="mixture of experts beside the dense MLP, attention_k_eq_v with global KV "
        "heads, final softcap, bidirectional attention over images, vision standardize",
        hardware="one 80 GB GPU (bf16), or two 48 GB",
        text={
            "layer_types": pattern(5, 1),  # [26B] 5 sliding + 1 full (x5 in 30 layers)
            "hidden_size_per_layer_input": 0,  # [26B] 0/null: no per-layer embeddings
            "enable_moe_block": True,  # [26B] true
            "num_experts": 4,  # [26B] 128
            "top_k_experts": 2,  # [26B] 8
            "moe_intermediate_size": 32,  # [26B] 704
            "attention_k_eq_v": True,  # [26B] true
            "num_attention_heads": 4,  # [26B] 16 heads / 8 KV heads
            "num_key_value_heads": 2,
            "num_global_key_value_heads": 1,  # [26B] 2 on full-attention layers
            "final_logit_softcapping": 30.0,  # [26B] 30.0
            "use_bidirectional_attention": "vision",  # [26B] "vision"
        },
        vision={"standardize": True, "use_clipped_linears": False},  # [26B]
        empty_thought_channel=True,  # [TPL]
    ),
    "31b": Family(
        name="31b",
        summary="dense, attention_k_eq_v with global KV heads, final softcap, bidirectional "
        "attention over images, vision standardize",
        hardware="one 80 GB GPU (bf16), or two 48 GB",
        text={
            "layer_types": pattern(5, 1),  # [31B] 5 sliding + 1 full (x10 in 60 layers)
            "hidden_size_per_layer_input": 0,  # [31B] 0/null
            "attention_k_eq_v": True,  # [31B] true
            "num_attention_heads": 4,  # [31B] 32 heads / 16 KV heads
            "num_key_value_heads": 2,
            "num_global_key_value_heads": 1,  # [31B] 4 on full-attention layers
            "final_logit_softcapping": 30.0,  # [31B] 30.0
            "use_bidirectional_attention": "vision",  # [31B] "vision"
        },
        vision={"standardize": True, "use_clipped_linears": False},  # [31B] as 26B
        empty_thought_channel=True,  # [TPL]
    ),
    "12b": Family(
        name="12b",
        summary="encoder-free (Gemma4UnifiedForConditionalGeneration: pixel patches -> "
        "LayerNorm/dense/positional embedding -> the same multimodal embedder), "
        "attention_k_eq_v with one global KV head, final softcap, bidirectional attention over "
        "images, an audio embedder",
        hardware="one 40 GB GPU (bf16)",
        text={
            "layer_types": pattern(5, 1),  # [12B] 5 sliding + 1 full (x8 in 48 layers)
            "attention_k_eq_v": True,  # [12B] true
            "num_attention_heads": 4,  # [12B] 16 heads / 8 KV heads
            "num_key_value_heads": 2,
            "num_global_key_value_heads": 1,  # [12B] 1
            "final_logit_softcapping": 30.0,  # [12B] 30.0
            "use_bidirectional_attention": "vision",  # [12B] "vision"
        },
        audio=True,  # [12B] audio_config (gemma4_unified_audio, raw frames, no tower)
        unified=True,  # [12B] architectures: Gemma4UnifiedForConditionalGeneration
        empty_thought_channel=True,  # [TPL] reported for 12B as for 26B / 31B
    ),
}


def family(name: str) -> Family:
    """The family called ``name`` (a ``ValueError`` naming the known ones otherwise)."""
    try:
        return FAMILIES[name]
    except KeyError:
        raise ValueError(f"unknown family {name!r}; known: {', '.join(FAMILIES)}") from None

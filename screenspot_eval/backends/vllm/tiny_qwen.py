"""Build tiny random Qwen-VL checkpoints (Qwen2.5-VL, Qwen3-VL) that HF transformers and vLLM load.

Like the Gemma 4 twins (:mod:`~screenspot_eval.backends.vllm.tiny`): deterministic for a seed,
built offline (tokenizer trained here, weights drawn here), 1-4 MB, and switching on what the
published checkpoint switches on, every width tiny. The numbers they produce mean nothing about
Qwen; they exist to run the real engine on each family's code path without a GPU or a hub.

Sources (read in December 2026 as restated, field for field and in agreement, by several public
repositories' fixtures; the checkpoints' own files were not reachable from here):

- [Q25] ``Qwen/Qwen2.5-VL-7B-Instruct``: ``config.json`` (vision depth 32, window attention
  ``window_size`` 112 with full attention in blocks 7, 15, 23, 31, ``hidden_act`` silu, patch
  14, spatial merge 2, temporal patch 2, ``tokens_per_second`` 2; text: ``mrope_section``
  [16, 24, 24] of head_dim 128, ``rope_theta`` 1e6, ``rms_norm_eps`` 1e-6, 28 heads / 4 KV
  heads, ``sliding_window`` 32768 with ``use_sliding_window`` false, ``tie_word_embeddings``
  false); ``preprocessor_config.json`` (``Qwen2VLImageProcessor``, ``min_pixels`` 3136,
  ``max_pixels`` 12845056, CLIP mean / std); the chat template (a default system turn
  "You are a helpful assistant." when the first message is not a system message).
- [Q3] ``Qwen/Qwen3-VL-8B-Instruct``: ``config.json`` (vision depth 27, ``deepstack_visual_indexes``
  [8, 16, 24], learnt position embeddings ``num_position_embeddings`` 2304 (48 x 48), patch 16,
  ``hidden_act`` gelu_pytorch_tanh; text: head_dim 128, ``mrope_section`` [24, 20, 20] with
  ``mrope_interleaved`` true, ``rope_theta`` 5e6, 32 heads / 8 KV heads, no attention bias,
  ``tie_word_embeddings`` false); ``preprocessor_config.json`` (``size`` shortest_edge 65536,
  longest_edge 16777216, patch 16, mean / std 0.5); ``video_preprocessor_config.json``
  (shortest_edge 4096, longest_edge 25165824); the chat template (no default system turn).

Widths here: text hidden 64, 2 heads of 32 (vLLM's CPU attention supports 32), 1 KV head, 2
layers; the mrope sections keep the published ratios over head_dim 32 ([4, 6, 6] and [6, 5, 5]).
The processor keeps the published image budget: a small test image is resized (and costs) the
same either way, and the budget is what decides how a screenshot is resized, which is what a twin
must get right. ``min_pixels`` / ``max_pixels`` can be lowered per build for tests that need it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from screenspot_eval.backends.vllm.logs import no_progress_bars

#: Qwen's special tokens, in the published vocabulary's order (they follow the BPE vocabulary).
SPECIAL_TOKENS: tuple[str, ...] = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>",
    "<|object_ref_start|>", "<|object_ref_end|>", "<|box_start|>", "<|box_end|>",
    "<|quad_start|>", "<|quad_end|>",
    "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
)  # fmt: skip
IMAGE_PLACEHOLDER = "<|vision_start|><|image_pad|><|vision_end|>"
VIDEO_PLACEHOLDER = "<|vision_start|><|video_pad|><|vision_end|>"
DEFAULT_SYSTEM = "You are a helpful assistant."  # [Q25] template's default system turn


def chat_template(default_system: bool) -> str:
    """A template of our own rendering what the published ones render for system, user and
    assistant turns (no tools): ChatML turns ``<|im_start|>ROLE\\n...<|im_end|>\\n``, each image
    item as ``<|vision_start|><|image_pad|><|vision_end|>`` where it stands (the processor expands
    the pad), ``Picture N: `` before it under ``add_vision_id``, text as given (not trimmed), and
    ``<|im_start|>assistant\\n`` for ``add_generation_prompt``.

    ``default_system`` [Q25]: a first message that is not a system message gets the system turn
    "You are a helpful assistant." first. Without it [Q3] a system turn appears only when the
    first message is one, and renders its text items only.
    """
    render = (
        "{%- macro render(c, vision) -%}"
        "{%- if c is string -%}{{ c }}"
        "{%- else -%}{%- for item in c -%}"
        "{%- if vision and (item['type'] == 'image' or 'image' in item or 'image_url' in item) -%}"
        "{%- set images.value = images.value + 1 -%}"
        "{%- if add_vision_id -%}{{ 'Picture ' ~ images.value ~ ': ' }}{%- endif -%}"
        f"{{{{ '{IMAGE_PLACEHOLDER}' }}}}"
        "{%- elif vision and (item['type'] == 'video' or 'video' in item) -%}"
        "{%- set videos.value = videos.value + 1 -%}"
        "{%- if add_vision_id -%}{{ 'Video ' ~ videos.value ~ ': ' }}{%- endif -%}"
        f"{{{{ '{VIDEO_PLACEHOLDER}' }}}}"
        "{%- elif 'text' in item -%}{{ item['text'] }}{%- endif -%}"
        "{%- endfor -%}{%- endif -%}"
        "{%- endmacro -%}"
    )
    head = (
        "{%- set images = namespace(value=0) -%}{%- set videos = namespace(value=0) -%}"
        "{%- set add_vision_id = add_vision_id | default(false) -%}"
    )
    if default_system:  # [Q25]: every message rendered in full, images in any role
        body = (
            "{%- for message in messages -%}"
            "{%- if loop.first and message['role'] != 'system' -%}"
            f"{{{{ '<|im_start|>system\\n{DEFAULT_SYSTEM}<|im_end|>\\n' }}}}"
            "{%- endif -%}"
            "{{ '<|im_start|>' + message['role'] + '\\n' }}{{ render(message['content'], true) }}"
            "{{ '<|im_end|>\\n' }}"
            "{%- endfor -%}"
        )
    else:  # [Q3]: a leading system turn (text only), then user and assistant turns
        body = (
            "{%- for message in messages -%}"
            "{%- if message['role'] == 'system' -%}{%- if loop.first -%}"
            "{{ '<|im_start|>system\\n' }}{{ render(message['content'], false) }}"
            "{{ '<|im_end|>\\n' }}"
            "{%- endif -%}"
            "{%- else -%}"
            "{{ '<|im_start|>' + message['role'] + '\\n' }}"
            "{{ render(message['content'], message['role'] == 'user') }}{{ '<|im_end|>\\n' }}"
            "{%- endif -%}"
            "{%- endfor -%}"
        )
    prompt = "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\\n' }}{%- endif -%}"
    return head + render + body + prompt


@dataclass(frozen=True)
class QwenFamily:
    """One published Qwen-VL checkpoint family, as its tiny twin builds it."""

    name: str
    label: str  # the model family's name in messages
    summary: str  # the features, for ``tiny-model --help``
    source: str  # the checkpoint whose published files the switches come from
    architecture: str  # the HF / vLLM architecture
    model_type: str  # the HF config's model_type
    text: dict[str, Any]  # text config: tiny widths, published switches
    vision: dict[str, Any]  # vision config: tiny widths, published switches
    processor: str  # the transformers processor class
    video_processor: str  # the transformers video processor class
    patch_size: int  # the vision patch; the resize factor is patch_size * merge_size
    min_pixels: int  # published preprocessor_config.json image budget
    max_pixels: int
    image_mean: tuple[float, float, float]
    image_std: tuple[float, float, float]
    default_system: bool  # the template's default system turn
    video_size: dict[str, int] | None = None  # published video budget, where there is one
    merge_size: int = 2  # [Q25] / [Q3] spatial merge 2
    temporal_patch_size: int = 2  # [Q25] / [Q3]
    tie_word_embeddings: bool = False  # [Q25] 7B / [Q3] 8B: false

    @property
    def factor(self) -> int:
        """The side every resized image is a multiple of (28 for Qwen2.5-VL, 32 for Qwen3-VL)."""
        return self.patch_size * self.merge_size


CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
TEXT_WIDTHS: dict[str, Any] = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,  # head_dim 32
    "num_key_value_heads": 1,  # grouped-query attention, as published (28/4, 32/8)
    "hidden_act": "silu",
    "rms_norm_eps": 1e-6,  # [Q25] / [Q3]
}

QWEN_FAMILIES: dict[str, QwenFamily] = {
    "qwen2.5-vl": QwenFamily(
        name="qwen2.5-vl",
        label="Qwen2.5-VL",
        summary="windowed vision attention with full-attention blocks, gated SiLU "
        "vision MLP, mrope [16:24:24], patch 14 (resize factor 28), default system turn",
        source="Qwen/Qwen2.5-VL-7B-Instruct",
        architecture="Qwen2_5_VLForConditionalGeneration",
        model_type="qwen2_5_vl",
        text={
            **TEXT_WIDTHS,
            "max_position_embeddings": 128000,  # [Q25] 128000
            "max_window_layers": 2,  # [Q25] 28 of 28 layers
            "sliding_window": 32768,  # [Q25] 32768, switched off by use_sliding_window
            "use_sliding_window": False,  # [Q25] false
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 1000000.0,  # [Q25] 1e6
                "mrope_section": [4, 6, 6],  # [Q25] [16, 24, 24] of head_dim 128 (sum 64)
            },
        },
        vision={
            "depth": 2,  # [Q25] 32
            "hidden_size": 48,  # [Q25] 1280
            "intermediate_size": 96,  # [Q25] 3420
            "num_heads": 2,  # [Q25] 16
            "out_hidden_size": 64,  # [Q25] 3584 = text hidden size
            "hidden_act": "silu",  # [Q25] silu
            "patch_size": 14,  # [Q25] 14
            "spatial_merge_size": 2,  # [Q25] 2
            "temporal_patch_size": 2,  # [Q25] 2
            "window_size": 112,  # [Q25] 112: 4 x 4 merged patches per window
            "fullatt_block_indexes": [1],  # [Q25] [7, 15, 23, 31]: every 8th, the last full
            "tokens_per_second": 2,  # [Q25] 2 (transformers' default is 4)
            "in_channels": 3,
        },
        processor="Qwen2_5_VLProcessor",
        video_processor="Qwen2VLVideoProcessor",
        patch_size=14,
        min_pixels=3136,  # [Q25] 56 * 56 = 4 * 28 * 28
        max_pixels=12845056,  # [Q25] 16384 * 28 * 28
        image_mean=CLIP_MEAN,
        image_std=CLIP_STD,
        default_system=True,
    ),
    "qwen3-vl": QwenFamily(
        name="qwen3-vl",
        label="Qwen3-VL",
        summary="DeepStack (intermediate vision layers fed to the first text layers), "
        "interpolated learnt vision position embeddings, interleaved mrope [24:20:20], QK norm, "
        "patch 16 (resize factor 32)",
        source="Qwen/Qwen3-VL-8B-Instruct",
        architecture="Qwen3VLForConditionalGeneration",
        model_type="qwen3_vl",
        text={
            **TEXT_WIDTHS,
            "head_dim": 32,  # [Q3] 128
            "attention_bias": False,  # [Q3] false
            "max_position_embeddings": 262144,  # [Q3] 262144
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 5000000.0,  # [Q3] 5e6
                "mrope_section": [6, 5, 5],  # [Q3] [24, 20, 20] of head_dim 128 (sum 64)
                "mrope_interleaved": True,  # [Q3] true
            },
        },
        vision={
            "depth": 3,  # [Q3] 27
            "hidden_size": 48,  # [Q3] 1152
            "intermediate_size": 96,  # [Q3] 4304
            "num_heads": 2,  # [Q3] 16
            "out_hidden_size": 64,  # [Q3] 4096 = text hidden size
            "hidden_act": "gelu_pytorch_tanh",  # [Q3]
            "patch_size": 16,  # [Q3] 16
            "spatial_merge_size": 2,  # [Q3] 2
            "temporal_patch_size": 2,  # [Q3] 2
            "num_position_embeddings": 2304,  # [Q3] 2304 (a 48 x 48 grid, interpolated)
            # [Q3] [8, 16, 24] of 27: intermediate layers, one per early text layer; here two
            # (the last vision layer is not one), added to both text layers.
            "deepstack_visual_indexes": [0, 1],
            "in_channels": 3,
        },
        processor="Qwen3VLProcessor",
        video_processor="Qwen3VLVideoProcessor",
        patch_size=16,
        min_pixels=65536,  # [Q3] shortest_edge 65536 = 64 * 32 * 32
        max_pixels=16777216,  # [Q3] longest_edge 16777216 = 16384 * 32 * 32
        image_mean=(0.5, 0.5, 0.5),
        image_std=(0.5, 0.5, 0.5),
        default_system=False,
        video_size={"shortest_edge": 4096, "longest_edge": 25165824},  # [Q3]
    ),
}
DEFAULT_QWEN_FAMILY = "qwen2.5-vl"
BPE_VOCAB_SIZE = 512


def qwen_family(name: str) -> QwenFamily:
    """The Qwen family called ``name`` (a ``ValueError`` naming the known ones otherwise)."""
    try:
        return QWEN_FAMILIES[name]
    except KeyError:
        known = ", ".join(QWEN_FAMILIES)
        raise ValueError(f"unknown Qwen family {name!r}; known: {known}") from None


def _corpus() -> list[str]:
    """Text the BPE merges are learnt from: the words grounding prompts and answers use."""
    words = (
        "Locate the UI element described by the instruction and output its click point "
        "(x, y) [x1, y1, x2, y2] <point>123 456</point> bbox_2d point_2d label click "
        '{"bbox_2d": [10, 20, 30, 40], "label": "save"} {"point_2d": [500, 250]} '
        "0 1 2 3 4 5 6 7 8 9 user assistant system open save file refresh button icon text"
    )
    return [words] * 4


def build_tokenizer(template: str):
    """A byte-level BPE tokenizer with Qwen's pre-tokenizer and special tokens, as a
    ``Qwen2Tokenizer`` (the published tokenizer class): ``<|im_end|>`` ends a turn (eos),
    ``<|endoftext|>`` pads, no bos."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import Qwen2Tokenizer

    probe = Qwen2Tokenizer()  # only for its pre-tokenizer (Qwen's split regex, then bytes)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = probe.backend_tokenizer.pre_tokenizer
    trainer = trainers.BpeTrainer(
        vocab_size=BPE_VOCAB_SIZE,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer=trainer)
    model = json.loads(tok.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    vocab = dict(model["vocab"])
    vocab.update({name: len(vocab) + i for i, name in enumerate(SPECIAL_TOKENS)})
    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,
        unk_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens=[t for t in SPECIAL_TOKENS if t not in ("<|im_end|>",)],
        chat_template=template,
        model_max_length=131072,
    )
    ids = [tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS]
    assert ids == list(range(ids[0], ids[0] + len(SPECIAL_TOKENS))), ids
    return tokenizer


def token_ids(tokenizer) -> dict[str, int]:
    """The special token ids the HF config names."""
    ids = {name: tokenizer.convert_tokens_to_ids(name) for name in SPECIAL_TOKENS}
    return {
        "image_token_id": ids["<|image_pad|>"],
        "video_token_id": ids["<|video_pad|>"],
        "vision_start_token_id": ids["<|vision_start|>"],
        "vision_end_token_id": ids["<|vision_end|>"],
    }


def _turn_ids(tokenizer) -> tuple[int, int]:
    """``<|endoftext|>`` (bos, pad, end of text) and ``<|im_end|>`` (end of turn)."""
    return tokenizer.convert_tokens_to_ids("<|endoftext|>"), tokenizer.convert_tokens_to_ids(
        "<|im_end|>"
    )


def build_config(fam: QwenFamily, tokenizer):
    """The HF config of ``fam``'s twin."""
    from transformers import AutoConfig

    ids = token_ids(tokenizer)
    endoftext, im_end = _turn_ids(tokenizer)
    text = {
        **fam.text,
        "vocab_size": len(tokenizer),
        "bos_token_id": endoftext,  # [Q25] / [Q3]: 151643, <|endoftext|>
        "eos_token_id": im_end,  # [Q25] / [Q3]: 151645, <|im_end|>
        "pad_token_id": endoftext,
    }
    config = AutoConfig.for_model(
        fam.model_type,
        text_config=text,
        vision_config=dict(fam.vision),
        tie_word_embeddings=fam.tie_word_embeddings,
        **ids,
    )
    config.architectures = [fam.architecture]
    return config


def build_processor(fam: QwenFamily, tokenizer, template: str, min_pixels: int, max_pixels: int):
    """The family's processor with ``Qwen2VLImageProcessor`` at the given image budget."""
    import transformers as t

    image = t.Qwen2VLImageProcessor(
        size={"shortest_edge": min_pixels, "longest_edge": max_pixels},
        patch_size=fam.patch_size,
        temporal_patch_size=fam.temporal_patch_size,
        merge_size=fam.merge_size,
        image_mean=list(fam.image_mean),
        image_std=list(fam.image_std),
    )
    video_kwargs: dict[str, Any] = {
        "patch_size": fam.patch_size,
        "temporal_patch_size": fam.temporal_patch_size,
        "merge_size": fam.merge_size,
        "image_mean": list(fam.image_mean),
        "image_std": list(fam.image_std),
    }
    if fam.video_size:
        video_kwargs["size"] = dict(fam.video_size)
    video = getattr(t, fam.video_processor)(**video_kwargs)
    return getattr(t, fam.processor)(
        image_processor=image, tokenizer=tokenizer, video_processor=video, chat_template=template
    )


def build_tiny_qwen_vl(
    out_dir: str | Path,
    family: str = DEFAULT_QWEN_FAMILY,
    seed: int = 0,
    *,
    min_pixels: int | None = None,
    max_pixels: int | None = None,
) -> Path:
    """Write the twin of ``family`` ("qwen2.5-vl" or "qwen3-vl") to ``out_dir``: config.json,
    generation_config.json, model.safetensors (float32, drawn from ``seed``), the tokenizer,
    the processor configs (image budget: the published one unless ``min_pixels`` /
    ``max_pixels`` say otherwise) and the chat template. Offline; returns ``out_dir``."""
    import torch
    from transformers import AutoModelForImageTextToText, GenerationConfig

    fam = qwen_family(family)
    lo = fam.min_pixels if min_pixels is None else min_pixels
    hi = fam.max_pixels if max_pixels is None else max_pixels
    if not 0 < lo <= hi:
        raise ValueError(f"need 0 < min_pixels <= max_pixels, got {lo}, {hi}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    template = chat_template(fam.default_system)
    tokenizer = build_tokenizer(template)
    config = build_config(fam, tokenizer)
    torch.manual_seed(seed)
    model = AutoModelForImageTextToText.from_config(config).to(torch.float32).eval()
    endoftext, im_end = _turn_ids(tokenizer)
    # [Q25] / [Q3] generation_config.json: a turn ends at <|im_end|> or <|endoftext|>. No
    # sampling defaults (vLLM would apply a checkpoint's to requests that set none): the
    # twin's answers are compared greedy.
    model.generation_config = GenerationConfig(
        bos_token_id=endoftext, eos_token_id=[im_end, endoftext], pad_token_id=endoftext
    )
    with no_progress_bars():  # the terminal is the tool's: no "Writing model shards" bar
        model.save_pretrained(out)
    build_processor(fam, tokenizer, template, lo, hi).save_pretrained(out)
    record = {
        "family": fam.name,
        "source": fam.source,
        "architecture": fam.architecture,
        "seed": seed,
        "min_pixels": lo,
        "max_pixels": hi,
        "factor": fam.factor,
        "features": fam.summary,
        "text": fam.text,
        "vision": fam.vision,
    }
    (out / "tiny_qwen_spec.json").write_text(json.dumps(record, indent=2) + "\n")
    return out

"""Build a tiny random Gemma 4 multimodal checkpoint that both HF transformers and vLLM load.

Why: the project must run the real vLLM engine on machines with no GPU and no model hub. The
checkpoint is deterministic for a seed, 1-4 MB, and exercises the real Gemma 4 code paths of its
family (:mod:`~screenspot_eval.backends.vllm.families`): the default twin's vision width differs
from its text width, so the two norm placements act on different widths; every twin's two
placements compute different things (the in-engine self-check proves it).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from screenspot_eval.backends.vllm.families import DEFAULT_FAMILY, Family, family
from screenspot_eval.backends.vllm.logs import no_progress_bars

# Gemma 4 special tokens; ids 0, 1, 2 are fixed by the text config (pad, eos, bos). The thought
# channel and thinking markers are the real template's.
SPECIAL_TOKENS: tuple[str, ...] = (
    "<pad>", "<eos>", "<bos>", "<|turn>", "<turn|>",
    "<|image>", "<image|>", "<|image|>",
    "<|audio>", "<audio|>", "<|audio|>", "<|video|>",
    "<|channel>", "<channel|>", "<|think|>",
)  # fmt: skip
EMPTY_THOUGHT_CHANNEL = "<|channel>thought\n<channel|>"


def chat_template(empty_thought_channel: bool) -> str:
    """A template of our own with the real Gemma 4 turn format.

    ``<bos>``; a system turn only for a system message or thinking (``<|think|>`` first);
    ``<|turn>ROLE\n...<turn|>\n`` per message (assistant -> ``model``), text trimmed, each image
    item as ``<|image|>`` where it stands (the processor expands it); the generation prompt
    ``<|turn>model\n``, followed, where the family's template does so (26B, 31B, 12B) and
    thinking is off, by an empty thought channel.
    """
    content = (
        "{%- macro content(c) -%}"
        "{%- if c is string -%}{{ c | trim }}"
        "{%- else -%}{%- for item in c -%}"
        "{%- if item['type'] in ['image', 'image_url', 'image_pil'] -%}{{ '<|image|>' }}"
        "{%- elif item['type'] == 'text' -%}{{ item['text'] | trim }}{%- endif -%}"
        "{%- endfor -%}{%- endif -%}"
        "{%- endmacro -%}"
    )
    thought = f"{{{{ '{EMPTY_THOUGHT_CHANNEL}' }}}}" if empty_thought_channel else ""
    return (
        content + "{%- set enable_thinking = enable_thinking | default(false) -%}"
        "{{ bos_token }}"
        "{%- set has_system = messages and messages[0]['role'] in ['system', 'developer'] -%}"
        "{%- if enable_thinking or has_system -%}"
        "{{ '<|turn>system\n' }}{%- if enable_thinking -%}{{ '<|think|>\n' }}{%- endif -%}"
        "{%- if has_system -%}{{ content(messages[0]['content']) }}{%- endif -%}"
        "{{ '<turn|>\n' }}"
        "{%- endif -%}"
        "{%- for message in messages -%}"
        "{%- if not (loop.first and has_system) -%}"
        "{%- set role = 'model' if message['role'] == 'assistant' else message['role'] -%}"
        "{{ '<|turn>' + role + '\n' }}{{ content(message['content']) }}{{ '<turn|>\n' }}"
        "{%- endif -%}"
        "{%- endfor -%}"
        "{%- if add_generation_prompt -%}{{ '<|turn>model\n' }}"
        f"{{%- if not enable_thinking -%}}{thought}{{%- endif -%}}"
        "{%- endif -%}"
    )


@dataclass(frozen=True)
class TinyGemma4Spec:
    """Sizes of the tiny checkpoint. Text head sizes are ones vLLM's CPU attention supports."""

    seed: int = 0
    text_hidden_size: int = 64
    text_intermediate_size: int = 128
    text_layers: int = 2
    text_heads: int = 2
    text_kv_heads: int = 1
    head_dim: int = 32
    global_head_dim: int = 64
    vision_hidden_size: int = 48
    vision_intermediate_size: int = 96
    vision_layers: int = 1
    vision_heads: int = 2
    vision_head_dim: int = 24
    max_soft_tokens: int = 70
    bpe_vocab_size: int = 512


def _corpus() -> list[str]:
    """Text the BPE merges are learnt from: the words our prompts and answers use."""
    words = (
        "Locate the UI element described by the instruction and answer with its position "
        'point_2d box_2d label click {"point_2d": [500, 250]} [{"box_2d": [1, 2, 3, 4]}] '
        "x y 0 1 2 3 4 5 6 7 8 9 user model system open save file refresh button icon text"
    )
    return [words] * 4


def build_tokenizer(spec: TinyGemma4Spec, template: str):
    """A byte-level BPE tokenizer holding every Gemma 4 special token the processor needs."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=spec.bpe_vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer=trainer)
    for i, name in enumerate(SPECIAL_TOKENS[:3]):
        assert tok.token_to_id(name) == i, f"{name} must have id {i}"
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        eos_token="<eos>",
        bos_token="<bos>",
        extra_special_tokens={
            "image_token": "<|image|>",
            "boi_token": "<|image>",
            "eoi_token": "<image|>",
            "audio_token": "<|audio|>",
            # Needed even without audio: Gemma4Processor.validate_inputs reads them.
            "boa_token": "<|audio>",
            "eoa_token": "<audio|>",
        },
        chat_template=template,
    )


def _token_ids(tokenizer) -> dict[str, int]:
    ids = {name: tokenizer.convert_tokens_to_ids(name) for name in SPECIAL_TOKENS}
    return {
        "image_token_id": ids["<|image|>"],
        "boi_token_id": ids["<|image>"],
        "eoi_token_id": ids["<image|>"],
        "audio_token_id": ids["<|audio|>"],
        "boa_token_id": ids["<|audio>"],
        "eoa_token_index": ids["<audio|>"],
        "video_token_id": ids["<|video|>"],
    }


def _text_fields(spec: TinyGemma4Spec, fam: Family, vocab: int) -> dict[str, Any]:
    """The text config: tiny widths, then the family's switches over them."""
    fields: dict[str, Any] = {
        "vocab_size": vocab,
        "hidden_size": spec.text_hidden_size,
        "intermediate_size": spec.text_intermediate_size,
        "num_hidden_layers": len(fam.layer_types),
        "num_attention_heads": spec.text_heads,
        "num_key_value_heads": spec.text_kv_heads,
        "head_dim": spec.head_dim,
        "global_head_dim": spec.global_head_dim,
        "sliding_window": 64,
        "max_position_embeddings": 4096,
    }
    if not fam.unified:
        fields.update(vocab_size_per_layer_input=vocab, hidden_size_per_layer_input=0)
    return {**fields, **fam.text}


def _audio_config(spec: TinyGemma4Spec):
    """A tiny audio tower projecting to the text width (as E2B's 1536 does)."""
    from transformers import Gemma4AudioConfig

    return Gemma4AudioConfig(
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        subsampling_conv_channels=[8, 4],
        output_proj_dims=spec.text_hidden_size,
    )


def build_config(spec: TinyGemma4Spec, tokenizer, fam: Family):
    """The HF config of ``fam``'s twin (``Gemma4Config``, or ``Gemma4UnifiedConfig`` for 12B)."""
    if fam.unified:
        return _unified_config(spec, tokenizer, fam)
    from transformers import Gemma4Config, Gemma4TextConfig, Gemma4VisionConfig

    text = Gemma4TextConfig(**_text_fields(spec, fam, len(tokenizer)))
    vision = Gemma4VisionConfig(
        hidden_size=spec.vision_hidden_size,
        intermediate_size=spec.vision_intermediate_size,
        num_hidden_layers=spec.vision_layers,
        num_attention_heads=spec.vision_heads,
        num_key_value_heads=spec.vision_heads,
        head_dim=spec.vision_head_dim,
        position_embedding_size=1024,
        **fam.vision,
    )
    # Not a declared HF field, but vLLM reads it as the default image token budget.
    vision.default_output_length = spec.max_soft_tokens
    return Gemma4Config(
        text_config=text,
        vision_config=vision,
        audio_config=_audio_config(spec) if fam.audio else None,
        **_token_ids(tokenizer),
    )


def _unified_config(spec: TinyGemma4Spec, tokenizer, fam: Family):
    """The encoder-free 12B: no vision tower; patches go through a dense projection, positional
    embeddings and the same multimodal embedder, whose width is the text width (as in 12B)."""
    from transformers import (
        Gemma4UnifiedAudioConfig,
        Gemma4UnifiedConfig,
        Gemma4UnifiedTextConfig,
        Gemma4UnifiedVisionConfig,
    )

    text = Gemma4UnifiedTextConfig(**_text_fields(spec, fam, len(tokenizer)))
    vision = Gemma4UnifiedVisionConfig(
        patch_size=16,
        pooling_kernel_size=3,
        mm_embed_dim=spec.text_hidden_size,  # [12B] 3840 = text hidden size
        mm_posemb_size=1120,  # [12B] 1120
        output_proj_dims=spec.text_hidden_size,  # [12B] 3840 (the embedder's input width)
    )
    # Not a declared HF field, but vLLM reads it as the image token budget.
    vision.num_soft_tokens = spec.max_soft_tokens
    audio = Gemma4UnifiedAudioConfig(audio_embed_dim=UNIFIED_AUDIO_FRAME) if fam.audio else None
    return Gemma4UnifiedConfig(
        text_config=text, vision_config=vision, audio_config=audio, **_token_ids(tokenizer)
    )


#: Raw audio samples per frame of the 12B twin's audio embedder ([12B]: 640).
UNIFIED_AUDIO_FRAME = 32


def build_processor(spec: TinyGemma4Spec, tokenizer, fam: Family, template: str):
    """The family's processor (Gemma 4's, or the unified one), at the smallest image budget."""
    import transformers as t

    names = (
        ("Gemma4UnifiedProcessor", "Gemma4UnifiedImageProcessor", "Gemma4UnifiedVideoProcessor")
        if fam.unified
        else ("Gemma4Processor", "Gemma4ImageProcessor", "Gemma4VideoProcessor")
    )
    processor, image, video = (getattr(t, name) for name in names)
    features = (
        t.Gemma4UnifiedAudioFeatureExtractor(
            feature_size=UNIFIED_AUDIO_FRAME, audio_samples_per_token=UNIFIED_AUDIO_FRAME
        )
        if fam.unified
        else t.Gemma4AudioFeatureExtractor()
    )
    return processor(
        feature_extractor=features,
        image_processor=image(
            max_soft_tokens=spec.max_soft_tokens, patch_size=16, pooling_kernel_size=3
        ),
        tokenizer=tokenizer,
        video_processor=video(),
        chat_template=template,
        image_seq_length=spec.max_soft_tokens,
    )


def build_tiny_gemma4(
    out_dir: str | Path, spec: TinyGemma4Spec | None = None, family_name: str = DEFAULT_FAMILY
) -> Path:
    """Write the twin of ``family_name`` (weights, config, tokenizer, processor, chat
    template) to ``out_dir``."""
    import torch
    from transformers import AutoModelForImageTextToText

    spec = spec or TinyGemma4Spec()
    fam = family(family_name)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    template = chat_template(fam.empty_thought_channel)
    tokenizer = build_tokenizer(spec, template)
    config = build_config(spec, tokenizer, fam)
    torch.manual_seed(spec.seed)
    model = AutoModelForImageTextToText.from_config(config).to(torch.float32).eval()
    with no_progress_bars():  # the terminal is the tool's: no "Writing model shards" bar
        model.save_pretrained(out)
    build_processor(spec, tokenizer, fam, template).save_pretrained(out)
    record = {**asdict(spec), "family": fam.name, "features": fam.summary}
    (out / "tiny_gemma4_spec.json").write_text(json.dumps(record, indent=2) + "\n")
    return out

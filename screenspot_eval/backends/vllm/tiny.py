"""Build a tiny random Gemma 4 multimodal checkpoint that both HF transformers and vLLM load.

Why: the project must run the real vLLM engine on machines with no GPU and no model hub. The
checkpoint is deterministic for a seed, under 1 MB, and exercises the real Gemma 4 code paths:
its vision hidden size differs from the text hidden size, so the two norm placements of the
multimodal embedder act on different widths and produce different outputs.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

# Gemma 4 special tokens; ids 0, 1, 2 are fixed by the text config (pad, eos, bos).
SPECIAL_TOKENS: tuple[str, ...] = (
    "<pad>", "<eos>", "<bos>", "<|turn>", "<turn|>",
    "<|image>", "<image|>", "<|image|>",
    "<|audio>", "<audio|>", "<|audio|>", "<|video|>",
)  # fmt: skip

# Loops over the content list and emits the image placeholder itself, so vLLM never has to
# insert one the vocabulary lacks. Mirrors the real Gemma 4 turn format.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{%- for message in messages -%}"
    "{%- set role = 'model' if message['role'] == 'assistant' else message['role'] -%}"
    "<|turn>{{ role }}{{ '\\n' }}"
    "{%- if message['content'] is string -%}{{ message['content'] }}"
    "{%- else -%}{%- for item in message['content'] -%}"
    "{%- if item['type'] == 'image' or item['type'] == 'image_url' -%}{{ '\\n\\n<|image|>\\n\\n' }}"
    "{%- elif item['type'] == 'text' -%}{{ item['text'] }}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "<turn|>{{ '\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}<|turn>model{{ '\\n' }}{%- endif -%}"
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


def build_tokenizer(spec: TinyGemma4Spec):
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
        chat_template=CHAT_TEMPLATE,
    )


def build_config(spec: TinyGemma4Spec, tokenizer):
    from transformers import Gemma4Config, Gemma4TextConfig, Gemma4VisionConfig

    ids = {name: tokenizer.convert_tokens_to_ids(name) for name in SPECIAL_TOKENS}
    text = Gemma4TextConfig(
        vocab_size=len(tokenizer),
        vocab_size_per_layer_input=len(tokenizer),
        hidden_size=spec.text_hidden_size,
        intermediate_size=spec.text_intermediate_size,
        num_hidden_layers=spec.text_layers,
        num_attention_heads=spec.text_heads,
        num_key_value_heads=spec.text_kv_heads,
        head_dim=spec.head_dim,
        global_head_dim=spec.global_head_dim,
        hidden_size_per_layer_input=0,
        sliding_window=64,
        max_position_embeddings=4096,
        layer_types=["sliding_attention"] * (spec.text_layers - 1) + ["full_attention"],
    )
    vision = Gemma4VisionConfig(
        hidden_size=spec.vision_hidden_size,
        intermediate_size=spec.vision_intermediate_size,
        num_hidden_layers=spec.vision_layers,
        num_attention_heads=spec.vision_heads,
        num_key_value_heads=spec.vision_heads,
        head_dim=spec.vision_head_dim,
        position_embedding_size=1024,
    )
    # Not a declared HF field, but vLLM reads it as the default image token budget.
    vision.default_output_length = spec.max_soft_tokens
    return Gemma4Config(
        text_config=text,
        vision_config=vision,
        audio_config=None,
        image_token_id=ids["<|image|>"],
        boi_token_id=ids["<|image>"],
        eoi_token_id=ids["<image|>"],
        audio_token_id=ids["<|audio|>"],
        boa_token_id=ids["<|audio>"],
        eoa_token_index=ids["<audio|>"],
        video_token_id=ids["<|video|>"],
    )


def build_processor(spec: TinyGemma4Spec, tokenizer):
    from transformers import (
        Gemma4AudioFeatureExtractor,
        Gemma4ImageProcessor,
        Gemma4Processor,
        Gemma4VideoProcessor,
    )

    image_processor = Gemma4ImageProcessor(
        max_soft_tokens=spec.max_soft_tokens, patch_size=16, pooling_kernel_size=3
    )
    return Gemma4Processor(
        feature_extractor=Gemma4AudioFeatureExtractor(),
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=Gemma4VideoProcessor(),
        chat_template=CHAT_TEMPLATE,
        image_seq_length=spec.max_soft_tokens,
    )


def build_tiny_gemma4(out_dir: str | Path, spec: TinyGemma4Spec | None = None) -> Path:
    """Write the checkpoint (weights, config, tokenizer, processor, chat template) to ``out_dir``."""
    import torch
    from transformers import Gemma4ForConditionalGeneration

    spec = spec or TinyGemma4Spec()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(spec)
    config = build_config(spec, tokenizer)
    torch.manual_seed(spec.seed)
    model = Gemma4ForConditionalGeneration(config).to(torch.float32).eval()
    model.save_pretrained(out)
    build_processor(spec, tokenizer).save_pretrained(out)
    (out / "tiny_gemma4_spec.json").write_text(json.dumps(asdict(spec), indent=2) + "\n")
    return out

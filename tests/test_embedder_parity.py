"""Numerical parity of the embedder variants with their references (fp32, no engine)."""

from __future__ import annotations

import pytest
import torch
import transformers.models.gemma4.modeling_gemma4 as transformers_gemma4
from torch import nn

from screenspot_eval.backends.vllm.embedder import (
    SelectableNormEmbedder,
    rms_norm_without_weight,
)

IN_DIM, OUT_DIM, EPS = 48, 64, 1e-6


@pytest.fixture()
def configs():
    from transformers import Gemma4TextConfig, Gemma4VisionConfig

    return (
        Gemma4VisionConfig(hidden_size=IN_DIM, rms_norm_eps=EPS),
        Gemma4TextConfig(hidden_size=OUT_DIM),
    )


def _linear(seed: int = 0) -> nn.Linear:
    torch.manual_seed(seed)
    linear = nn.Linear(IN_DIM, OUT_DIM, bias=False)
    nn.init.normal_(linear.weight, std=0.3)
    return linear


def _inputs(seed: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(7, IN_DIM, generator=gen) * 3.0 + 0.5


def test_pre_matches_hf_reference_embedder(configs):
    vision, text = configs
    reference = transformers_gemma4.Gemma4MultimodalEmbedder(vision, text).float().eval()
    linear = _linear()
    reference.embedding_projection.weight.data.copy_(linear.weight)
    ours = SelectableNormEmbedder(linear, IN_DIM, OUT_DIM, EPS, "pre")
    x = _inputs()
    with torch.no_grad():
        diff = (ours(inputs_embeds=x) - reference(x)).abs().max().item()
    assert diff <= 1e-5


def test_post_matches_projection_then_norm_formula():
    linear = _linear()
    ours = SelectableNormEmbedder(linear, IN_DIM, OUT_DIM, EPS, "post")
    x = _inputs()
    with torch.no_grad():
        y = x @ linear.weight.T
        expected = y / torch.sqrt(y.pow(2).mean(-1, keepdim=True) + EPS)
        diff = (ours(inputs_embeds=x) - expected).abs().max().item()
    assert diff <= 1e-5


def test_pre_and_post_differ_and_norm_acts_on_different_widths():
    pre = SelectableNormEmbedder(_linear(), IN_DIM, OUT_DIM, EPS, "pre")
    post = SelectableNormEmbedder(_linear(), IN_DIM, OUT_DIM, EPS, "post")
    x = _inputs()
    with torch.no_grad():
        assert (pre(inputs_embeds=x) - post(inputs_embeds=x)).abs().max().item() > 1e-2
        # post output rows have unit RMS over the text width; pre output rows do not.
        rms_post = post(inputs_embeds=x).pow(2).mean(-1).sqrt()
        assert torch.allclose(rms_post, torch.ones_like(rms_post), atol=1e-4)
    assert (pre.norm_width, post.norm_width) == (IN_DIM, OUT_DIM)


def test_switching_in_place_changes_output_and_keeps_buffer_storage():
    emb = SelectableNormEmbedder(_linear(), IN_DIM, OUT_DIM, EPS, "pre")
    storage = emb.use_post_norm.data_ptr()
    x = _inputs()
    with torch.no_grad():
        before = emb(inputs_embeds=x)
        emb.set_placement("post")
        after = emb(inputs_embeds=x)
    assert emb.placement == "post"
    assert emb.use_post_norm.data_ptr() == storage
    assert not torch.allclose(before, after)


def test_switch_is_honoured_by_a_compiled_forward():
    """The placement is data (a buffer), so a compiled graph follows a switch without recompiling."""
    emb = SelectableNormEmbedder(_linear(), IN_DIM, OUT_DIM, EPS, "pre").eval()
    x = _inputs()
    compiled = torch.compile(emb, backend="eager", fullgraph=True)
    with torch.no_grad():
        eager_pre = emb(inputs_embeds=x)
        got_pre = compiled(inputs_embeds=x)
        emb.set_placement("post")
        eager_post = emb(inputs_embeds=x)
        got_post = compiled(inputs_embeds=x)
    assert torch.allclose(got_pre, eager_pre, atol=1e-6)
    assert torch.allclose(got_post, eager_post, atol=1e-6)


def test_rms_norm_without_weight_keeps_dtype():
    x = _inputs().to(torch.bfloat16)
    assert rms_norm_without_weight(x, EPS).dtype == torch.bfloat16


def test_unknown_placement_is_rejected():
    with pytest.raises(ValueError, match="unknown norm placement"):
        SelectableNormEmbedder(_linear(), IN_DIM, OUT_DIM, EPS, "middle")  # type: ignore[arg-type]

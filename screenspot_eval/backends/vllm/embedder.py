"""The two placements of the weightless RMSNorm in Gemma 4's multimodal embedder.

``pre``  (HF reference, vLLM >= 0.20): ``Linear(RMSNorm_in(x))``, norm over the tower width.
``post`` (vLLM <= 0.19):              ``RMSNorm_out(Linear(x))``, norm over the text width.

Neither norm has a weight, so both placements load the same checkpoint (only
``embedding_projection.weight``). The placement lives in a boolean tensor buffer that
``forward`` reads, not in Python control flow: a compiled or graph-captured forward then stays
correct when the placement is switched in place (both branches are computed and one is
selected; the projection is tiny next to the vision tower, so the cost is negligible).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

Placement = Literal["pre", "post"]
PLACEMENTS: tuple[Placement, ...] = ("pre", "post")


def is_loaded(module: nn.Module) -> bool:
    """Did vLLM load this embedder? Not when its modality is limited to 0 per prompt: vLLM then
    leaves a ``StageMissingLayer`` (which raises when called) over a module whose parameters
    sit on the meta device (no storage; ``.item()`` on them raises)."""
    if type(module).__name__ == "StageMissingLayer":
        return False
    projection = getattr(module, "embedding_projection", None)
    params = list(projection.parameters()) if isinstance(projection, nn.Module) else []
    return bool(params) and not any(p.is_meta for p in params)


def rms_norm_without_weight(x: torch.Tensor, eps: float) -> torch.Tensor:
    """RMSNorm with no scale, computed in fp32 and cast back (as HF and vLLM do)."""
    xf = x.float()
    normed = xf * torch.rsqrt(xf.pow(2).mean(dim=-1, keepdim=True) + eps)
    return normed.to(x.dtype)


class SelectableNormEmbedder(nn.Module):
    """Gemma 4 multimodal embedder whose norm placement is chosen at run time.

    Keeps the attribute ``embedding_projection`` (vLLM's weight loader and other model code
    read ``embed_vision.embedding_projection.weight``) and the call signature
    ``forward(inputs_embeds=...)``.
    """

    def __init__(
        self, projection: nn.Module, in_dim: int, out_dim: int, eps: float, placement: Placement
    ):
        super().__init__()
        if placement not in PLACEMENTS:
            raise ValueError(f"unknown norm placement {placement!r}; expected one of {PLACEMENTS}")
        self.embedding_projection = projection
        self.in_dim = in_dim
        self.out_dim = out_dim
        self.eps = eps
        device = next(projection.parameters()).device
        self.register_buffer(
            "use_post_norm", torch.tensor(placement == "post", device=device), persistent=False
        )

    @classmethod
    def replacing(cls, native: nn.Module, placement: Placement) -> SelectableNormEmbedder:
        """Wrap the projection of vLLM's own embedder (same weights, same attribute names)."""
        projection = native.embedding_projection
        return cls(
            projection,
            in_dim=int(projection.input_size),
            out_dim=int(projection.output_size),
            eps=float(native.eps),
            placement=placement,
        )

    @property
    def placement(self) -> Placement:
        return "post" if bool(self.use_post_norm.item()) else "pre"

    @property
    def norm_width(self) -> int:
        return self.out_dim if self.placement == "post" else self.in_dim

    def set_placement(self, placement: Placement) -> None:
        """Switch in place; the buffer keeps its storage, so captured graphs see the change."""
        if placement not in PLACEMENTS:
            raise ValueError(f"unknown norm placement {placement!r}; expected one of {PLACEMENTS}")
        self.use_post_norm.fill_(placement == "post")

    def _project(self, x: torch.Tensor) -> torch.Tensor:
        out = self.embedding_projection(x)
        return out[0] if isinstance(out, tuple) else out  # vLLM linears return (out, bias)

    def forward(self, inputs_embeds: torch.Tensor) -> torch.Tensor:
        pre = self._project(rms_norm_without_weight(inputs_embeds, self.eps))
        post = rms_norm_without_weight(self._project(inputs_embeds), self.eps)
        return torch.where(self.use_post_norm, post, pre)

    def extra_repr(self) -> str:
        return f"in_dim={self.in_dim}, out_dim={self.out_dim}, eps={self.eps}, placement={self.placement}"

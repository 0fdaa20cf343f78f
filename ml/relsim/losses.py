"""relsim's contrastive loss: image->text InfoNCE against the captions' text embeddings, with
images that share a caption treated as positives for it, never as each other's negatives.

How shared captions are handled: the batch's captions are de-duplicated into unique text
columns, so each image has exactly one positive column (its caption) and every other column is a
different caption. Without repeats this is exactly the released loss,
`cross_entropy(img @ txt.T / T, arange(B))`. The optional text->image half has several
positive images per caption row and uses the multi-positive form
`-log(sum_pos exp(s / T) / sum_all exp(s / T))`."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

# CLIP's cap on 1 / T: a learnt temperature never drops below 0.01.
_MAX_LOGIT_SCALE = math.log(100.0)


def unique_captions(captions: Sequence[str]) -> tuple[list[str], torch.Tensor]:
    """Unique captions in first-seen order, and for each input the index of its caption."""
    index: dict[str, int] = {}
    targets = [index.setdefault(caption, len(index)) for caption in captions]
    return list(index), torch.tensor(targets, dtype=torch.long)


def image_to_text_loss(
    image_emb: torch.Tensor,
    text_emb: torch.Tensor,
    targets: torch.Tensor,
    logit_scale: torch.Tensor,
) -> torch.Tensor:
    """Mean cross-entropy of each image over the unique captions; `targets[i]` is its column."""
    logits = logit_scale * image_emb @ text_emb.T
    return F.cross_entropy(logits, targets)


def text_to_image_loss(
    image_emb: torch.Tensor,
    text_emb: torch.Tensor,
    targets: torch.Tensor,
    logit_scale: torch.Tensor,
) -> torch.Tensor:
    """Mean over captions of -log(mass on that caption's images among all images)."""
    logits = logit_scale * text_emb @ image_emb.T  # [U, B]
    positive = targets.unsqueeze(0) == torch.arange(
        text_emb.shape[0], device=targets.device
    ).unsqueeze(1)
    all_terms = torch.logsumexp(logits, dim=1)
    pos_terms = torch.logsumexp(logits.masked_fill(~positive, float("-inf")), dim=1)
    return (all_terms - pos_terms).mean()


class ContrastiveLoss(nn.Module):
    """InfoNCE with a fixed (default 0.07, as released) or learnable temperature."""

    def __init__(
        self, temperature: float = 0.07, *, learnable: bool = False, symmetric: bool = False
    ) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError("temperature must be positive")
        scale = torch.tensor(math.log(1.0 / temperature))
        if learnable:
            self.log_scale: torch.Tensor = nn.Parameter(scale)
        else:
            self.register_buffer("log_scale", scale)
        self.symmetric = symmetric

    @property
    def temperature(self) -> float:
        return float(1.0 / self.logit_scale().detach())

    def logit_scale(self) -> torch.Tensor:
        return self.log_scale.clamp(max=_MAX_LOGIT_SCALE).exp()

    def forward(
        self, image_emb: torch.Tensor, text_emb: torch.Tensor, targets: torch.Tensor
    ) -> torch.Tensor:
        """`image_emb` [B, D] and `text_emb` [U, D] unit vectors, `targets` [B] in [0, U)."""
        # Logits at 1 / 0.07 scale need float32 even when the model runs under bf16 autocast.
        with torch.autocast(device_type=image_emb.device.type, enabled=False):
            scale = self.logit_scale().to(image_emb.device)
            image_emb = image_emb.float()
            text_emb = text_emb.float().to(image_emb.device)
            targets = targets.to(image_emb.device)
            loss = image_to_text_loss(image_emb, text_emb, targets, scale)
            if self.symmetric:
                loss = 0.5 * (loss + text_to_image_loss(image_emb, text_emb, targets, scale))
        return loss

"""Turn images into relsim's model inputs: one user turn "image then <|query|>" under the model's
chat template, image placeholders expanded, 3D-rope token types; identical in training and
inference. Picklable, so DataLoader workers can run it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from PIL import Image
from transformers import PreTrainedTokenizerBase
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

from ml.data.images import preprocess_image

QUERY_TOKEN = "<|query|>"
IMAGE_PAD_TOKEN = "<|image_pad|>"

# The query turn is rendered WITHOUT the generation prompt, in training and in inference alike.
# The choice cannot change the embedding anyway: attention is causal, so the hidden state at
# <|query|> never sees the tokens after it; leaving the prompt out only saves tokens.
ADD_GENERATION_PROMPT = False


def query_messages() -> list[dict[str, Any]]:
    """The single user turn relsim embeds: the image, then the query token."""
    return [
        {
            "role": "user",
            "content": [{"type": "image"}, {"type": "text", "text": QUERY_TOKEN}],
        }
    ]


class RelsimInputBuilder:
    """Builds padded model inputs for a batch of images (preprocessed here to `image_size`)."""

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        image_processor: Qwen2VLImageProcessorPil,
        image_size: int,
    ) -> None:
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.image_size = image_size
        self.image_token_id = self._id(IMAGE_PAD_TOKEN)
        self.query_token_id = self._id(QUERY_TOKEN)
        # Pads sit after the query token, so with causal attention they never reach it.
        pad_id = tokenizer.pad_token_id
        self.pad_token_id = int(pad_id if pad_id is not None else tokenizer.eos_token_id)
        messages: Any = query_messages()
        self.prompt = str(
            tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=ADD_GENERATION_PROMPT
            )
        )
        if self.prompt.count(IMAGE_PAD_TOKEN) != 1 or self.prompt.count(QUERY_TOKEN) != 1:
            raise ValueError(
                "the chat template must render the query turn with one image placeholder and "
                f"one {QUERY_TOKEN}; it rendered {self.prompt!r}"
            )

    def _id(self, token: str) -> int:
        token_id = self.tokenizer.get_vocab().get(token)
        if token_id is None:
            raise ValueError(f"tokenizer has no {token}; add it before building inputs")
        return int(token_id)

    def __call__(
        self, images: Sequence[Image.Image], *, preprocessed: bool = False
    ) -> dict[str, torch.Tensor]:
        if not images:
            raise ValueError("no images to encode")
        if not preprocessed:
            images = [preprocess_image(image, self.image_size) for image in images]
        vision = self.image_processor(images=list(images), return_tensors="pt")
        grid_thw = vision["image_grid_thw"]
        merge = int(self.image_processor.merge_size)
        rows: list[list[int]] = []
        for thw in grid_thw:
            n_tokens = int(thw.prod()) // (merge * merge)
            text = self.prompt.replace(IMAGE_PAD_TOKEN, IMAGE_PAD_TOKEN * n_tokens)
            rows.append(list(self.tokenizer(text, add_special_tokens=False)["input_ids"]))
        length = max(len(row) for row in rows)
        input_ids = torch.full((len(rows), length), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), length), dtype=torch.long)
        for i, row in enumerate(rows):
            input_ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
            attention_mask[i, : len(row)] = 1
        # Text 0, image 1: Qwen2.5-VL places image tokens on a 2D grid of rope positions.
        mm_token_type_ids = (input_ids == self.image_token_id).to(torch.int32)
        return {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "pixel_values": vision["pixel_values"],
            "image_grid_thw": grid_thw,
            "mm_token_type_ids": mm_token_type_ids,
        }

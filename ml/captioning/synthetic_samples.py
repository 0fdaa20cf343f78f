"""Training samples for the captioner and the interest filter drawn fresh from the synthetic
relational set: a sample set as large as the number of samples a run looks at, so that no
image is seen twice and nothing is stored (a tiny model trained from scratch overfits a fixed
set of a few thousand images long before it learns the relations).

Samples are addressed like the fine-tuning loop's other data sets, by (epoch, index); the
images depend on the index and the seed only."""

from __future__ import annotations

import random

from torch.utils.data import Dataset

from ml.captioning.interest_filter import NO, YES
from ml.captioning.prompts import CaptionPrompt
from ml.data.images import preprocess_image
from ml.synthetic.clutter import draw_clutter
from ml.synthetic.dataset import RELATIONS, render_relation
from ml.synthetic.shapes import SPLITS
from ml.vlm.tuned import ChatSample

SampleKey = tuple[int, int]


def _check(length: int, split: str) -> None:
    if length < 1:
        raise ValueError("length must be at least 1")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, not {split!r}")


class SyntheticCaptionSamples(Dataset[ChatSample]):
    """Sample i shows relation i mod 10 and its caption template: one image, or with
    probability `group_share` a group of k in [min_images, max_images] images of that
    relation under the group prompt (each image drawn with its own looks)."""

    def __init__(
        self,
        length: int,
        *,
        prompt: CaptionPrompt,
        image_size: int,
        group_share: float = 0.5,
        min_images: int = 2,
        max_images: int = 4,
        seed: int = 0,
        split: str = "train",
    ) -> None:
        _check(length, split)
        if not 0.0 <= group_share <= 1.0:
            raise ValueError("group_share must be within [0, 1]")
        if not 1 <= min_images <= max_images:
            raise ValueError("need 1 <= min_images <= max_images")
        self.length = length
        self.prompt = prompt
        self.image_size = image_size
        self.group_share = group_share
        self.min_images = min_images
        self.max_images = max_images
        self.seed = seed
        self.split = split

    def __len__(self) -> int:
        return self.length

    def image_count(self, index: int) -> int:
        """How many images sample `index` holds (1 for a single image)."""
        rng = random.Random(f"caption-stream/{self.seed}/{index}/size")
        if rng.random() >= self.group_share:
            return 1
        return rng.randint(self.min_images, self.max_images)

    def __getitem__(self, key: SampleKey) -> ChatSample:
        index = key[1]
        if not 0 <= index < self.length:
            raise IndexError(index)
        relation = RELATIONS[index % len(RELATIONS)]
        count = self.image_count(index)
        images = [
            preprocess_image(
                render_relation(
                    relation,
                    f"caption-stream/{self.seed}/{self.split}/{index}/{n}",
                    self.image_size,
                    self.split,
                ),
                self.image_size,
            )
            for n in range(count)
        ]
        return ChatSample(images, self.prompt.text(count), relation.caption)


class SyntheticFilterSamples(Dataset[tuple[ChatSample, int]]):
    """Relational images (yes) and unstructured clutter (no) at 1 : `clutter_per_relational`,
    the imbalance a real labelling pass has; every image freshly drawn."""

    def __init__(
        self,
        length: int,
        *,
        prompt: str,
        image_size: int,
        clutter_per_relational: int = 4,
        seed: int = 0,
        split: str = "train",
    ) -> None:
        _check(length, split)
        if clutter_per_relational < 1:
            raise ValueError("clutter_per_relational must be at least 1")
        self.length = length
        self.prompt = prompt
        self.image_size = image_size
        self.period = clutter_per_relational + 1
        self.seed = seed
        self.split = split

    def __len__(self) -> int:
        return self.length

    def label(self, index: int) -> int:
        return YES if index % self.period == 0 else NO

    @property
    def labels(self) -> list[int]:
        return [self.label(index) for index in range(self.length)]

    def __getitem__(self, key: SampleKey) -> tuple[ChatSample, int]:
        index = key[1]
        if not 0 <= index < self.length:
            raise IndexError(index)
        image_key = f"filter-stream/{self.seed}/{self.split}/{index}"
        label = self.label(index)
        if label == YES:
            relation = RELATIONS[(index // self.period) % len(RELATIONS)]
            image = render_relation(relation, image_key, self.image_size, self.split)
        else:
            image = draw_clutter(image_key, self.image_size, self.split)
        return ChatSample([preprocess_image(image, self.image_size)], self.prompt), label

"""The synthetic relational data set: procedurally drawn images whose relation is known and
independent of colours and shapes."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ml.lazy import lazy_exports
from ml.synthetic.clutter import draw_clutter
from ml.synthetic.relations import Relation
from ml.synthetic.shapes import SPLITS, is_held_out

if TYPE_CHECKING:
    from ml.synthetic.dataset import (
        RELATIONS,
        SyntheticDataset,
        SyntheticStream,
        draw_example,
        generate_dataset,
        read_labels,
        read_relation_split,
        relation_by_name,
        render_relation,
    )

# Command modules load on first use (see ml.lazy).
_LAZY = {
    "RELATIONS": "ml.synthetic.dataset",
    "SyntheticDataset": "ml.synthetic.dataset",
    "SyntheticStream": "ml.synthetic.dataset",
    "draw_example": "ml.synthetic.dataset",
    "generate_dataset": "ml.synthetic.dataset",
    "read_labels": "ml.synthetic.dataset",
    "read_relation_split": "ml.synthetic.dataset",
    "relation_by_name": "ml.synthetic.dataset",
    "render_relation": "ml.synthetic.dataset",
}

__all__ = [
    "RELATIONS",
    "SPLITS",
    "Relation",
    "SyntheticDataset",
    "SyntheticStream",
    "draw_clutter",
    "draw_example",
    "generate_dataset",
    "is_held_out",
    "read_labels",
    "read_relation_split",
    "relation_by_name",
    "render_relation",
]

__getattr__ = lazy_exports(__name__, _LAZY)

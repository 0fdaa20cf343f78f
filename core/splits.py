"""The data set splits that groups, captions and exports share."""

from __future__ import annotations

from django.db import models


class Split(models.TextChoices):
    # The values are stored in the database and written into exports: never change them.
    TRAIN = "train", "train"
    TEST = "test", "test"

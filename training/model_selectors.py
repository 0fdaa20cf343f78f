"""Reads for the model pages: the models and their indexes, the baselines the pool can be
indexed with and their indexes, the training recipe a form starts from, what a snapshot holds,
whether a gpu worker is alive, and what a checkpoint folder is."""

from __future__ import annotations

import pickle
import zipfile
from dataclasses import MISSING, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db.models import Count, Exists, OuterRef, QuerySet

from captions.export import MIN_GROUP_SIZE
from captions.models import Caption
from core.errors import JobInputError
from core.splits import Split
from curation.models import Group
from training.model_jobs import INDEX_BASELINES, TINY_RECIPE, index_baseline_problem
from training.model_paths import (
    TINY_VLM_FOLDER,
    BaselineModel,
    baseline_model,
    is_tiny_vlm,
    vlm_path,
)
from training.models import EmbeddingIndex, Job, TrainedModel
from training.selectors import live_workers
from training.snapshots import snapshot_zip

if TYPE_CHECKING:
    from ml.relsim import CheckpointInfo

TRAIN_FILE = "anonymous_captions_train.jsonl"


def models_with_indexes() -> QuerySet[TrainedModel]:
    return TrainedModel.objects.select_related("job").prefetch_related("indexes__job")


def model_jobs_recent(limit: int = 10) -> QuerySet[Job]:
    kinds = (Job.Kind.TRAIN_RELSIM, Job.Kind.EMBED)
    return Job.objects.filter(kind__in=kinds).order_by("-created_at", "-id")[:limit]


# --- Baseline indexes --------------------------------------------------------------------

# What each baseline is, as the form describes it (REFERENCE.md, "Evaluation protocol").
BASELINE_DESCRIPTIONS = {
    "clip-i": "CLIP image features",
    "clip-t": "the VLM's abstract caption, in CLIP's text space",
    "qwen-t": "Qwen's abstract caption, in CLIP's text space, as the release embeds it",
    "qwen-t-minilm": "the VLM's abstract caption, in MiniLM's text space",
    "dino": "DINOv2's CLS token",
    "pixels": "raw pixels, 16 x 16",
    "histogram": "colour histogram",
    "phash": "perceptual hash (DCT)",
    "dhash": "difference hash",
}


@dataclass(frozen=True)
class BaselineChoice:
    """A baseline the pool can be indexed with, the models it would load, and why it
    cannot be built here now ("" when it can)."""

    name: str
    models: tuple[BaselineModel, ...]
    problem: str

    @property
    def weight_free(self) -> bool:
        return not self.models

    @property
    def stand_in(self) -> bool:
        return any(model.stand_in for model in self.models)

    @property
    def queue(self) -> str:
        return Job.Queue.CPU if self.weight_free else Job.Queue.GPU

    @property
    def label(self) -> str:
        what = BASELINE_DESCRIPTIONS.get(self.name, self.name)
        if self.weight_free:
            how = "weight-free, cpu queue"
        elif self.stand_in:
            how = "random-weight stand-in, gpu queue"
        else:
            how = "gpu queue"
        return f"{self.name}: {what} ({how})"


def baseline_choices() -> list[BaselineChoice]:
    """Every baseline the app indexes with, as the settings allow it now (nothing built)."""
    return [
        BaselineChoice(
            name=name,
            models=tuple(baseline_model(key) for key in needs),
            problem=index_baseline_problem(name),
        )
        for name, needs in INDEX_BASELINES.items()
    ]


@dataclass(frozen=True)
class BaselineIndexRow:
    index: EmbeddingIndex
    newest: bool  # the one benchmarks and the search page use for its baseline
    stand_in: bool  # made with a demo stand-in model


def baseline_indexes(limit: int = 50) -> list[BaselineIndexRow]:
    """Baseline indexes, newest first, each baseline's newest marked."""
    records = EmbeddingIndex.objects.filter(model__isnull=True).select_related("job")
    seen: set[str] = set()
    rows = []
    for index in records.order_by("-created_at", "-id")[:limit]:
        newest = index.baseline not in seen
        seen.add(index.baseline)
        stand_in = bool(index.job is not None and index.job.artifacts.get("stand_in"))
        rows.append(BaselineIndexRow(index=index, newest=newest, stand_in=stand_in))
    return rows


def gpu_worker_missing() -> str:
    """Why a gpu job would wait forever now, or "" when a live worker takes the gpu queue."""
    if live_workers(Job.Queue.GPU):
        return ""
    return (
        "No worker serves the gpu queue (none has reported in the last "
        f"{settings.RELSIM_JOB_STALE_SECONDS} s), so the job would never start: "
        "start one with `celery -A config worker -Q gpu`."
    )


def gpus_unavailable(wanted: int) -> str:
    """Why a run over `wanted` GPUs cannot start, or "": one GPU (or the CPU) is always
    there to ask for; more need a live gpu worker with at least that many."""
    if wanted <= 1:
        return ""
    most = max((w.gpus for w in live_workers(Job.Queue.GPU)), default=0)
    if most >= wanted:
        return ""
    return (
        f"No live gpu worker has {wanted} GPUs: the most any has is {most}. A worker counts "
        "RELSIM_GPU_DEVICES, else CUDA_VISIBLE_DEVICES, else what nvidia-smi lists."
    )


# --- The training recipe ------------------------------------------------------------------


@dataclass(frozen=True)
class Recipe:
    """The options a training form starts from, and where they come from."""

    defaults: dict[str, Any]  # every TrainConfig option, the recipe's values overlaid
    tiny: bool  # the configured VLM is the tiny demo model: TINY_RECIPE applies
    vlm: str  # the configured VLM, as a person reads it


def train_config_defaults() -> dict[str, Any]:
    """TrainConfig's own defaults (the paper's recipe), one per option that has one."""
    from ml.relsim import TrainConfig

    found: dict[str, Any] = {}
    for option in fields(TrainConfig):
        if option.default is not MISSING:
            found[option.name] = option.default
        elif option.default_factory is not MISSING:
            found[option.name] = option.default_factory()
    return found


def training_recipe() -> Recipe:
    """What a training job will start from, the same way model_jobs.relsim_config decides it.
    With no VLM configured that is the tiny demo model, named here without building it (a
    job builds it the first time it needs it)."""
    if settings.RELSIM_VLM_PATH.strip():
        folder = vlm_path()
        tiny = is_tiny_vlm(folder)
    else:
        folder, tiny = settings.DATA_DIR / "models" / TINY_VLM_FOLDER, True
    defaults = train_config_defaults()
    if tiny:
        defaults.update(TINY_RECIPE)
    return Recipe(defaults=defaults, tiny=tiny, vlm=str(folder))


# --- What a training run would learn from -------------------------------------------------


def approved_train_images() -> int:
    """Captioned training images an export of the approved captions would hold now: each
    image of a captioned train-split group (of at least MIN_GROUP_SIZE) and each single image
    with an approved train caption, as captions.export counts its train lines."""
    captioned = Caption.objects.filter(group=OuterRef("pk"), status=Caption.Status.APPROVED)
    sizes = (
        Group.objects.filter(Exists(captioned), split=Split.TRAIN)
        .annotate(size=Count("members"))
        .filter(size__gte=MIN_GROUP_SIZE)
        .values_list("size", flat=True)
    )
    singles = (
        Caption.objects.filter(
            image__isnull=False, status=Caption.Status.APPROVED, split=Split.TRAIN
        )
        .values("image")
        .distinct()
        .count()
    )
    return sum(sizes) + singles


def snapshot_exports(limit: int = 20) -> QuerySet[Job]:
    """Succeeded exports, newest first: the snapshots a training run may learn from."""
    return Job.objects.filter(kind=Job.Kind.EXPORT_DATASET, status=Job.Status.SUCCEEDED).order_by(
        "-created_at", "-id"
    )[:limit]


def snapshot_train_images(export_job: Job) -> int:
    """Captioned training images in an export's zip. Read from the zip itself: unpacking a
    large snapshot is the job's work, not a form's. JobInputError when it cannot be read."""
    path = snapshot_zip(export_job)
    try:
        with zipfile.ZipFile(path) as archive:
            if TRAIN_FILE not in archive.namelist():
                return 0
            with archive.open(TRAIN_FILE) as handle:
                return sum(1 for line in handle if line.strip())
    except (zipfile.BadZipFile, OSError) as exc:
        raise JobInputError(f"{path.name} is not a readable export: {exc}") from None


# --- Checkpoint folders -------------------------------------------------------------------


class NotARelsimCheckpoint(ValueError):
    """The folder is not a relsim checkpoint; the message says what it is instead."""


# Files that mark the other checkpoint kinds this project writes (ml.baselines.tuned and
# ml.captioning); named here so a wrong folder gets a message that says what it is.
_OTHER_KINDS = {
    "tuned_config.json": "a tuned baseline (CLIP or DINO) checkpoint",
    "captioner_config.json": "an anonymous captioner checkpoint",
    "interest_filter_config.json": "an interest filter checkpoint",
}
_ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
_PROCESSOR_FILES = ("tokenizer_config.json", "preprocessor_config.json")


def relsim_checkpoint(folder: Path) -> CheckpointInfo:
    """What a relsim checkpoint folder (the released layout, ours or the release's) holds,
    read without loading any weights. NotARelsimCheckpoint says why a folder is not one."""
    from ml.relsim.checkpoint import (
        ADAPTER_CONFIG_FILE,
        FULL_BACKBONE_DIR,
        PROJECTION_FILE,
        read_checkpoint_info,
    )

    if not folder.is_dir():
        raise NotARelsimCheckpoint(f"{folder} is not a folder; choose the checkpoint folder.")
    for marker, kind in _OTHER_KINDS.items():
        if (folder / marker).is_file():
            raise NotARelsimCheckpoint(f"{folder} is {kind}, not a relsim model.")
    if not (folder / PROJECTION_FILE).is_file():
        from ml.train.run_state import list_checkpoints

        runs = list_checkpoints(folder)
        if runs:
            newest = ", ".join(path.name for _, path in runs[-3:])
            raise NotARelsimCheckpoint(
                f"{folder} is a training run, not a checkpoint; choose one of its checkpoint "
                f"folders ({newest})."
            )
        raise NotARelsimCheckpoint(
            f"{folder} is not a relsim model: it has no {PROJECTION_FILE} (a relsim checkpoint "
            f"holds a PEFT adapter, the processor files and {PROJECTION_FILE})."
        )
    try:
        info = read_checkpoint_info(folder)
    except (OSError, ValueError, KeyError, TypeError, RuntimeError, pickle.UnpicklingError) as exc:
        raise NotARelsimCheckpoint(
            f"{folder} is not a readable relsim checkpoint ({type(exc).__name__}: {exc})."
        ) from None
    missing: list[str] = []
    if info.config.finetune == "full":
        if not (folder / FULL_BACKBONE_DIR).is_dir():
            missing.append(f"{FULL_BACKBONE_DIR}/")
    else:
        if not (folder / ADAPTER_CONFIG_FILE).is_file():
            missing.append(ADAPTER_CONFIG_FILE)
        if not any((folder / name).is_file() for name in _ADAPTER_WEIGHTS):
            missing.append(_ADAPTER_WEIGHTS[0])
    missing += [name for name in _PROCESSOR_FILES if not (folder / name).is_file()]
    if missing:
        raise NotARelsimCheckpoint(
            f"{folder} is an incomplete relsim checkpoint: {', '.join(missing)} missing."
        )
    return info

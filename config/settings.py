"""relsim studio settings: one file, every value read from the environment (see README)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import dj_database_url
import django_stubs_ext
from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured

from config.env import (
    env_bool,
    env_fraction,
    env_int,
    env_list,
    env_networks,
    env_path,
    env_str,
    env_url,
)

# Lets `admin.ModelAdmin[Image]` and the other generic classes the types use be written at
# run time too.
django_stubs_ext.monkeypatch()

BASE_DIR = Path(__file__).resolve().parent.parent
APP_VERSION = "0.1.0"

DEBUG = env_bool("DEBUG", True)
DATA_DIR = env_path("RELSIM_DATA_DIR", BASE_DIR / "var")

_DEV_SECRET_KEY = "dev-only-insecure-key-do-not-deploy"
SECRET_KEY = env_str("SECRET_KEY", _DEV_SECRET_KEY if DEBUG else None)
if not DEBUG and SECRET_KEY == _DEV_SECRET_KEY:
    raise ImproperlyConfigured("SECRET_KEY must be set to a real secret when DEBUG is off")

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_htmx",
    "template_partials",
    "axes",
    "csp",
    "core",
    "curation",
    "captions",
    "training",
    "evaluation",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # Last, so that it turns a lockout flagged anywhere above into the lockout page.
    "axes.middleware.AxesMiddleware",
]

# Axes' backend comes first: it refuses a locked-out login before any password is checked.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "config.context_processors.app",
            ],
        },
    },
]

# --- Database: SQLite in the data directory unless DATABASE_URL says otherwise.
_default_db = f"sqlite:///{DATA_DIR / 'db.sqlite3'}"
_db_url = env_url("DATABASE_URL", _default_db, schemes=("sqlite", "postgres", "postgresql"))
DATABASES = {"default": dj_database_url.parse(_db_url, conn_max_age=env_int("DB_CONN_MAX_AGE", 0))}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    DATA_DIR.mkdir(parents=True, exist_ok=True)  # SQLite cannot create its folder.
    # A file (not memory) test database, so that Celery worker processes started by the
    # integration tests see the rows the tests write.
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / "test-db.sqlite3")}
    # Write transactions take the lock at BEGIN (a deferred one that reads, then writes,
    # fails at once with "database is locked" instead of waiting), waiting up to the busy
    # timeout; WAL lets pages read while someone writes.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "timeout": env_int("SQLITE_BUSY_TIMEOUT_S", 20, minimum=1),
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
elif env_bool("DB_PREPARED_STATEMENTS", True):
    # The study's answer path keeps its statements prepared on the server
    # (evaluation/answer_sql.py asks for it statement by statement; Django's own cursors
    # bind on the client and never prepare). Django turns psycopg's preparing off unless a
    # threshold is set; this one is never reached by count. Set DB_PREPARED_STATEMENTS=0
    # behind a pooler in transaction mode that cannot keep prepared statements.
    DATABASES["default"].setdefault("OPTIONS", {})["prepare_threshold"] = 2**31 - 1
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Files: images and artefacts under the data directory, through the storage API.
MEDIA_ROOT = DATA_DIR / "media"
MEDIA_URL = "/media/"
STATIC_URL = "/static/"
STATIC_ROOT = DATA_DIR / "static"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

# --- Upload and import limits.
RELSIM_MAX_UPLOAD_MB = env_int("RELSIM_MAX_UPLOAD_MB", 512, minimum=1)
RELSIM_MAX_IMAGE_MB = env_int("RELSIM_MAX_IMAGE_MB", 50, minimum=1)
RELSIM_MAX_IMAGE_PIXELS = env_int("RELSIM_MAX_IMAGE_PIXELS", 64_000_000, minimum=64)
RELSIM_FETCH_TIMEOUT_S = env_int("RELSIM_FETCH_TIMEOUT_S", 15, minimum=1)
FILE_UPLOAD_MAX_MEMORY_SIZE = 10 * 2**20
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 2**20
# Uploads are counted while they stream in and stopped past RELSIM_MAX_UPLOAD_MB;
# what spills to disk meanwhile stays under the data directory.
FILE_UPLOAD_HANDLERS = [
    "core.uploads.SizeLimitUploadHandler",
    "django.core.files.uploadhandler.MemoryFileUploadHandler",
    "django.core.files.uploadhandler.TemporaryFileUploadHandler",
]
FILE_UPLOAD_TEMP_DIR = DATA_DIR / "tmp"
FILE_UPLOAD_TEMP_DIR.mkdir(parents=True, exist_ok=True)  # Django's checks insist it exists.
# Networks an import with --fetch may still reach although they are not public (CIDRs).
RELSIM_FETCH_ALLOWED_NETWORKS = env_networks("RELSIM_FETCH_ALLOWED_NETWORKS", [])
# Server folders that jobs may read imports from (uploads land in the first).
RELSIM_IMPORT_ROOTS = env_list(
    "RELSIM_IMPORT_ROOTS", [str(DATA_DIR / "uploads"), str(DATA_DIR / "imports")]
)
RELSIM_GROUP_MAX_SIZE = env_int("RELSIM_GROUP_MAX_SIZE", 10, minimum=2)
RELSIM_THUMBNAIL_PX = env_int("RELSIM_THUMBNAIL_PX", 256, minimum=32)

# --- Curation and review.
RELSIM_POOL_PAGE_SIZE = env_int("RELSIM_POOL_PAGE_SIZE", 48, minimum=1)
RELSIM_LABELS_PER_IMAGE = env_int("RELSIM_LABELS_PER_IMAGE", 1, minimum=1)
RELSIM_LEASE_SECONDS = env_int("RELSIM_LEASE_SECONDS", 600, minimum=10)
# Which unlabelled image the labelling queue serves next: the oldest, or (active learning) the
# one the active interest filter is least sure of, its score nearest 0.5.
RELSIM_LABEL_ORDER = env_str("RELSIM_LABEL_ORDER", "oldest").strip().lower()
if RELSIM_LABEL_ORDER not in {"oldest", "uncertain"}:
    raise ImproperlyConfigured(
        f"RELSIM_LABEL_ORDER must be 'oldest' or 'uncertain', not {RELSIM_LABEL_ORDER!r}"
    )
RELSIM_PRESENCE_SECONDS = env_int("RELSIM_PRESENCE_SECONDS", 30, minimum=5)
RELSIM_ALLOW_SELF_APPROVAL = env_bool("RELSIM_ALLOW_SELF_APPROVAL", False)
# A reviewer may approve their own edit of someone else's text up to this many changed words.
RELSIM_REVIEW_EDIT_WORDS = env_int("RELSIM_REVIEW_EDIT_WORDS", 3, minimum=0)
RELSIM_CAPTION_MAX_CHARS = env_int("RELSIM_CAPTION_MAX_CHARS", 300, minimum=20)
RELSIM_PLACEHOLDERS = env_list(
    "RELSIM_PLACEHOLDERS",
    [
        "Object",
        "Animal",
        "Person",
        "Character",
        "Word",
        "Meaning",
        "Color",
        "Shape",
        "Number",
        "Place",
        "Material",
        "Action",
        "Emotion",
        "Pattern",
        "Plant",
        "Food",
        "Symbol",
        "Planet",
    ],
)
# Words that give concrete content away; a file (one word a line) or a comma list.
RELSIM_LEAK_WORDS = env_list(
    "RELSIM_LEAK_WORDS",
    [
        "cat",
        "dog",
        "bird",
        "horse",
        "cow",
        "fish",
        "car",
        "tree",
        "flower",
        "apple",
        "banana",
        "orange",
        "peach",
        "earth",
        "sun",
        "moon",
        "house",
        "chair",
        "table",
        "book",
        "phone",
        "red",
        "blue",
        "green",
        "yellow",
        "purple",
        "black",
        "white",
        "circle",
        "square",
        "triangle",
        "star",
        "rectangle",
        "oval",
        "ellipse",
        "pentagon",
        "hexagon",
        "octagon",
        "diamond",
        "heart",
        "arrow",
        "cross",
        "crescent",
        "ring",
        "cube",
        "sphere",
        "ball",
        "cone",
        "cylinder",
        "pyramid",
        "prism",
        "man",
        "woman",
        "child",
        "boy",
        "girl",
        "pizza",
        "cake",
    ],
)
# Whether a caption that names concrete content only warns ("warning") or blocks ("error").
RELSIM_LEAK_LEVEL = env_str("RELSIM_LEAK_LEVEL", "warning").strip().lower()
if RELSIM_LEAK_LEVEL not in {"warning", "error"}:
    raise ImproperlyConfigured(
        f"RELSIM_LEAK_LEVEL must be 'warning' or 'error', not {RELSIM_LEAK_LEVEL!r}"
    )
# An uploaded image on the search page is embedded by the active relsim model inside the web
# process, on its CPU: fine for small models, not for the 7B one (gigabytes in every web
# worker, minutes to load). Above this many MB of weights the page says to import the image
# instead, so that an index update on a GPU worker embeds it.
RELSIM_SEARCH_UPLOAD_MAX_MODEL_MB = env_int("RELSIM_SEARCH_UPLOAD_MAX_MODEL_MB", 2048, minimum=0)
# "Find similar" sources, best first; the first available one serves.
RELSIM_SIMILARITY_SOURCES = env_list(
    "RELSIM_SIMILARITY_SOURCES",
    ["training.similarity.RelsimIndexSimilarity", "curation.similarity.PerceptualHashSimilarity"],
)
# The code the audit of a drafting batch rejects the batch's remaining drafts with when an
# admin sends the batch back (captions.audit_services); keep it in a custom list.
RELSIM_AUDIT_SEND_BACK_REASON = "batch-sent-back"
RELSIM_REJECT_REASONS = env_list(
    "RELSIM_REJECT_REASONS",
    [
        "leaks-content",
        "wrong-logic",
        "too-vague",
        "malformed",
        "duplicate",
        "other",
        RELSIM_AUDIT_SEND_BACK_REASON,
    ],
)
# Audit of a drafting batch: how many of its drafts reviewers judge (fewer when the batch is
# smaller), and the share approved unchanged at which the audit recommends accepting the
# rest. The recommendation compares the sample's point estimate with the rate and says
# plainly whether the Wilson 95% interval's lower bound clears it too: with 30 drafts even
# 30 of 30 has a lower bound of 0.89, so a lower-bound rule could never accept at 0.9.
RELSIM_AUDIT_SAMPLE_SIZE = env_int("RELSIM_AUDIT_SAMPLE_SIZE", 30, minimum=1)
RELSIM_AUDIT_ACCEPT_RATE = env_fraction("RELSIM_AUDIT_ACCEPT_RATE", 0.9)

# --- Models: local folders (or hub names on a machine with a model cache).
# Empty means "build and use the tiny demo model in the data directory".
RELSIM_VLM_PATH = env_str("RELSIM_VLM_PATH", "")
RELSIM_TEXT_ENCODER_PATH = env_str("RELSIM_TEXT_ENCODER_PATH", "")
# The CLIP (CLIPModel) and DINOv2 folders of the baselines. Empty: with the demo's VLM,
# tiny random-weight stand-ins; with a real VLM, those baselines are not offered.
RELSIM_CLIP_PATH = env_str("RELSIM_CLIP_PATH", "")
RELSIM_DINO_PATH = env_str("RELSIM_DINO_PATH", "")

# --- The automatic judge: an OpenAI-compatible chat endpoint (API root, e.g. ".../v1"),
# the defaults of the judge form. The key stays in the environment: it is never stored.
RELSIM_JUDGE_URL = env_str("RELSIM_JUDGE_URL", "").strip()
if RELSIM_JUDGE_URL and not RELSIM_JUDGE_URL.startswith(("http://", "https://")):
    raise ImproperlyConfigured(
        f"RELSIM_JUDGE_URL must start with http:// or https://, not {RELSIM_JUDGE_URL!r}"
    )
RELSIM_JUDGE_MODEL = env_str("RELSIM_JUDGE_MODEL", "").strip()
RELSIM_JUDGE_API_KEY = env_str("RELSIM_JUDGE_API_KEY", "").strip()

# --- A/B studies: answers one participant may send per window of seconds. A person needs a
# second or more per trial; a faster stream is a script or a stuck key.
RELSIM_STUDY_ANSWER_BURST = env_int("RELSIM_STUDY_ANSWER_BURST", 30, minimum=1)
RELSIM_STUDY_ANSWER_WINDOW_S = env_int("RELSIM_STUDY_ANSWER_WINDOW_S", 10, minimum=1)

# --- Celery: a broker that needs no server by default, Redis (or AMQP) when configured.
CELERY_BROKER_URL = env_url(
    "CELERY_BROKER_URL", "filesystem://", schemes=("filesystem", "redis", "rediss", "amqp")
)
if CELERY_BROKER_URL.startswith("filesystem://"):
    # kombu's filesystem transport: a folder of message files, no server to run.
    _broker_dir = env_path("RELSIM_BROKER_DIR", DATA_DIR / "broker")
    CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
else:
    # Longer than the longest job, so a slow job is not redelivered while it still runs.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 7 * 24 * 3600}
RELSIM_JOB_STALE_SECONDS = env_int("RELSIM_JOB_STALE_SECONDS", 120, minimum=1)
RELSIM_JOB_HEARTBEAT_SECONDS = env_int("RELSIM_JOB_HEARTBEAT_SECONDS", 10, minimum=1)
RELSIM_JOB_PROGRESS_MS = env_int("RELSIM_JOB_PROGRESS_MS", 2000, minimum=0)
# A cancelled model job gets this long to save and stop after SIGTERM before its whole
# process group is killed.
RELSIM_JOB_CANCEL_GRACE_SECONDS = env_int("RELSIM_JOB_CANCEL_GRACE_SECONDS", 3, minimum=0)
# The GPUs this worker's model jobs may use (CUDA_VISIBLE_DEVICES for their processes);
# empty leaves the worker's own environment as it is.
RELSIM_GPU_DEVICES = env_str("RELSIM_GPU_DEVICES", "")
# How often each worker reports itself alive and fails jobs whose worker went silent.
RELSIM_WORKER_BEAT_SECONDS = env_int("RELSIM_WORKER_BEAT_SECONDS", 15, minimum=1)
# A broker that does not answer fails the job in seconds, with the reason, instead of
# hanging the page that started it.
CELERY_BROKER_CONNECTION_TIMEOUT = env_int("CELERY_BROKER_CONNECTION_TIMEOUT", 3, minimum=1)
CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": 2,
    "interval_start": 0,
    "interval_step": 0.5,
    "interval_max": 1,
}

# --- Auth.
LOGIN_URL = "/login/"
LOGIN_REDIRECT_URL = "/"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# Login throttling (django-axes). Failures count per user name and address together, so a
# guesser is stopped without letting anyone lock a colleague out from elsewhere, and the
# count works the same behind a proxy that hides client addresses.
AXES_FAILURE_LIMIT = env_int("RELSIM_LOGIN_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("RELSIM_LOGIN_COOLOFF_MINUTES", 15, minimum=1))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "config.lockout.lockout_response"
AXES_VERBOSE = False  # No banner on every manage.py start; lockouts are still logged.

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Security: strict by default once DEBUG is off (check --deploy reports nothing).
# Content-Security-Policy, always on: every script and style comes from our own static files,
# so no inline code, eval or third-party origin is allowed.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],
        "connect-src": [SELF],
        "font-src": [SELF],
        "object-src": [NONE],
        "base-uri": [NONE],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}
if not DEBUG:
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31_536_000, minimum=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
    SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", True)
    if env_bool("SECURE_PROXY_SSL", False):
        SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
}

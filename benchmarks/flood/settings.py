"""The app's settings with the reference views' URLs in front (benchmark servers only)."""

from config.settings import *  # noqa: F403

ROOT_URLCONF = "benchmarks.flood.urls"

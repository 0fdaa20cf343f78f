"""Scripts that print speed, memory and quality figures; each runs as `python -m benchmarks.NAME`
from the repository root."""

"""Background jobs (every one a Job row), checkpoints and embedding indexes."""

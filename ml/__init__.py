"""relsim's engine: a plain PyTorch library (no Django, no Celery) for the models, training,
embedding and search behind relsim studio."""

"""relsim's engine: a plain PyTorch library (no Django, no Celery) for the models, training,
embedding and search behind relsim studio.

One folder per concept, each `__init__` listing its public names: `vlm` (backbones and the LoRA
tuning base), `relsim` (the relsim model and its loss), `captioning` (captioner and interest
filter), `baselines`, `synthetic` (the synthetic relational set), `search`, `judge`, `train` (the
one training loop), `data` (export formats and image preprocessing) and `callbacks`. Importing
`ml` itself loads nothing heavy."""

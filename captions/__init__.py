"""Anonymous captions, their revisions and review, and data set export/import."""

"""Images, imports, interest labels and groups."""

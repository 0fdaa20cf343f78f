"""Evaluation models (retrieval benchmark, judge runs, A/B studies) live here."""

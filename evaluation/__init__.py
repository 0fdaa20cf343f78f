"""Retrieval benchmark, automatic judge and A/B studies."""

"""Keel: the production layer for LLM features."""

__version__ = "0.1.0"

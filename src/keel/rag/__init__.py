"""Retrieval: loaders, structure-aware chunking, BM25 + vector indexes, hybrid search, citations."""

from keel.rag.collection import Collection, Found, list_collections
from keel.rag.ingest import IngestReport, ingest

__all__ = ["Collection", "Found", "IngestReport", "ingest", "list_collections"]

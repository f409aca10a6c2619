"""Celery workers: ingest, delete, bulk ingest, reindex and reconcile, over HTTP to the
catalog, index and embedding services (no torch, no faiss in these processes)."""

"""Vector index backends (Faiss, Milvus), their durability (write-ahead log, snapshots) and
the generations (live, staging) the service swaps between."""

"""The vector index service: Faiss (or Milvus) behind one protocol, made durable by a
write-ahead log and atomic snapshots."""

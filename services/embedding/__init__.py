"""The embedding service: image bytes in, L2-normalised DINOv2 features out (NumPy engine)."""

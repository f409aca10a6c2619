"""The `imgsearch` command line."""

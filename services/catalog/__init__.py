"""The catalog service: the source of truth for images, tags, users and jobs (MySQL / SQLite)."""

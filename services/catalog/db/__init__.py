"""Database layer of the catalog: models, engine, migrations."""

"""The catalog's data access: keyword-only functions over a SQLAlchemy session.

Write functions commit their own transaction; `transact` runs one with a fresh session and
retries it when MySQL reports a deadlock or a lock wait timeout (the whole transaction is
rolled back by the server then, so running it again is safe).
"""

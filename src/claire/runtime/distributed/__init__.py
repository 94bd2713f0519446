"""The distributed runtime: one process per service over Redis Streams and PostgreSQL."""

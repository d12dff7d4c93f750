"""The HTTP application: ingest, admin API, health and metrics."""

"""Benchmark commands, each run as a script (`python benchmarks/ingest.py`…); a package so
that they share benchmarks/ingest.py (the machine, the HTTP load client, RESULTS.md)."""

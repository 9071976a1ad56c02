"""Benchmarks of cxrres: `make bench`, or `python -m benchmarks.<name>`; each appends to benchmarks/RESULTS.md."""

"""The suites users run; shipped in the package as bench.suites (`pytest --pyargs bench.suites`)."""

"""The cross-check: whether the harness's figures are what a user's own plain script measures on
the same host (`crosscheck.py` drives it, `plain.py` is the script)."""

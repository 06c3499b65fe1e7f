"""The `durablechat` admin CLI (cli.py)."""

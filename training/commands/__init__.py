"""One module per CLI command (see ``training/cli.py``)."""

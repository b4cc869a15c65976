"""batchctl, the command-line client (``cli.main:main``)."""

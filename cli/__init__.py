"""The ``vqz`` command line (typer): one module per command, over :mod:`vqz.api` and the coding runtime; the
training and benchmark commands are loaded from their worlds only when called (:mod:`vqz.cli.app`)."""

"""``python -m vqz``: the same as the ``vqz`` command."""

from vqz.cli.app import main

if __name__ == "__main__":
    main()

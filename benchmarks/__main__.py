"""``python -m vqz.benchmarks bench ...`` / ``python -m vqz.benchmarks bench-speed ...``."""

from vqz.benchmarks.cli import make_app

make_app()(prog_name="python -m vqz.benchmarks")

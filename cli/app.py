"""The ``vqz`` command line: one typer app, one module per command.

Each command's module is imported only when that command runs (or when ``vqz --help`` or
shell completion lists the commands), so ``vqz info`` never imports the encoder, the
benchmarks or numpy, and ``vqz decode`` never imports the encoder's modules. Command
modules import the model (ONNX Runtime, never torch) only inside the commands. Plain
option values are converted without pydantic (:mod:`vqz.cli.params`).
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterator, MutableMapping

import typer
from typer.core import TyperCommand, TyperGroup

from vqz.cli.params import install as install_fast_conversion

#: command name -> (module, function), in the order ``vqz --help`` lists them
COMMANDS = {
    "encode": ("vqz.cli.encode", "encode"),
    "decode": ("vqz.cli.decode", "decode"),
    "info": ("vqz.cli.info", "info"),
    "models": ("vqz.cli.models", "models"),
    "train": ("vqz.training.cli", "train"),
    "export-model": ("vqz.training.cli", "export_model"),
    "train-postfilter": ("vqz.training.cli", "train_postfilter"),
    "export-postfilter": ("vqz.training.cli", "export_postfilter"),
    "train-realism": ("vqz.training.cli", "train_realism"),
    "export-realism": ("vqz.training.cli", "export_realism"),
    "train-light": ("vqz.training.cli", "train_light"),
    "train-light-analysis": ("vqz.training.cli", "train_light_analysis"),
    "export-light": ("vqz.training.cli", "export_light"),
    # the benchmark suite's commands, listed when the suite imports
    "bench": ("vqz.benchmarks.cli", "bench"),
    "bench-speed": ("vqz.benchmarks.cli", "bench_speed"),
}
#: modules whose commands are left out when they cannot be imported (an optional part)
OPTIONAL_MODULES = {"vqz.benchmarks.cli"}


class _LazyCommands(MutableMapping):
    """The group's ``commands``: names known up front, each command built on first access.

    A command whose optional module does not import is dropped (as if never registered).
    """

    def __init__(self, built: dict, group: LazyGroup) -> None:
        self._names = list(dict.fromkeys([*COMMANDS, *built]))
        self._built = dict(built)
        self._group = group

    def __getitem__(self, name: str):
        if name not in self._built:
            if name not in self._names:
                raise KeyError(name)
            command = self._group.build_command(name)
            if command is None:
                self._names.remove(name)
                raise KeyError(name)
            self._built[name] = command
        return self._built[name]

    def __setitem__(self, name: str, command) -> None:
        if name not in self._names:
            self._names.append(name)
        self._built[name] = command

    def __delitem__(self, name: str) -> None:
        self._names.remove(name)
        self._built.pop(name, None)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._names))

    def __len__(self) -> int:
        return len(self._names)


class LazyGroup(TyperGroup):
    """A typer group whose commands (``COMMANDS``) are built from their modules when first used."""

    def __init__(self, *, commands=None, rich_markup_mode=None, **attrs) -> None:
        super().__init__(commands=None, rich_markup_mode=rich_markup_mode, **attrs)
        self.commands = _LazyCommands(dict(commands or {}), self)

    def build_command(self, name: str):
        """The click command of ``name``, built as typer builds a registered command."""
        module_name, attribute = COMMANDS[name]
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            if module_name in OPTIONAL_MODULES:  # pragma: no cover - optional extra
                return None
            raise
        single = typer.Typer()
        single.command(name, cls=FastCommand)(getattr(module, attribute))
        command = typer.main.get_command_from_info(
            single.registered_commands[0],
            pretty_exceptions_short=app.pretty_exceptions_short,
            rich_markup_mode=self.rich_markup_mode,
        )
        return command

    def parse_args(self, ctx, args: list[str]) -> list[str]:
        install_fast_conversion(self.get_params(ctx))  # with the completion and help options, made late
        return super().parse_args(ctx, args)


class FastCommand(TyperCommand):
    """A typer command whose plain option values are converted without pydantic."""

    def parse_args(self, ctx, args: list[str]) -> list[str]:
        install_fast_conversion(self.get_params(ctx))
        return super().parse_args(ctx, args)

    def list_commands(self, ctx) -> list[str]:
        return [name for name in list(self.commands) if self.commands.get(name) is not None]


app = typer.Typer(
    name="vqz",
    cls=LazyGroup,
    help="vqz: a learned image codec. Example: vqz encode photo.png && vqz decode photo.vqz -o out.png",
    context_settings={"help_option_names": ["-h", "--help"]},
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,
)


@app.callback()
def _group() -> None:
    # a group with its commands in LazyGroup: typer makes a group of an app with a callback
    pass


try:  # the click exceptions typer raises: typer >= 0.29 vendors click as typer._click
    from typer._click import exceptions as _CLICK
except ImportError:  # older typer depends on click itself
    from click import exceptions as _CLICK


def main() -> None:
    """Console-script entry point: never lets a traceback reach the user; a usage error is one line on
    stderr (``vqz CMD: usage error: ...``) and exit status 2."""
    try:
        status = app(standalone_mode=False)
    except _CLICK.UsageError as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # `vqz` alone: the help, as a usage error
            print(exc.ctx.get_help())
            sys.exit(2)
        command = exc.ctx.command_path if exc.ctx is not None else "vqz"
        message = " ".join(exc.format_message().split())
        print(f"{command}: usage error: {message} (see `{command} -h`)", file=sys.stderr)
        sys.exit(2)
    except typer.Abort:
        print("vqz: interrupted", file=sys.stderr)
        sys.exit(130)
    except KeyboardInterrupt:
        print("vqz: interrupted", file=sys.stderr)
        sys.exit(130)
    except SystemExit:
        raise
    except BrokenPipeError:  # e.g. `vqz decode x.vqz -o - | head -c 10`: the reader left
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # no second error when Python flushes stdout at exit
        sys.exit(1)
    except Exception as exc:  # last line of defence: one line, exit 1
        print(f"vqz: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        sys.exit(1)
    sys.exit(status if isinstance(status, int) else 0)

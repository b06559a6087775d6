"""The Typer application and its one error boundary.

Every :class:`~cifarkit.errors.CifarkitError` and every usage error becomes one line on stderr
and a non-zero exit code (1 for failures, 2 for bad usage), never a traceback.
"""

from __future__ import annotations

import re
import sys
from typing import Annotated

import typer
from typer.core import TyperGroup
from typer.exceptions import TyperException

from ..errors import CifarkitError, cli_wording


class _OneLineErrors(TyperGroup):
    """Turns errors into one readable line; used by the console script and by CliRunner alike."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        self.argv = sys.argv[1:] if args is None else list(args)
        try:
            with cli_wording():
                result = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except TyperException as exc:  # bad option or argument: exit code 2
            if type(exc).__name__ == "NoArgsIsHelpError":  # bare `cifarkit`: the help, as it is laid out
                exc.show()
                sys.exit(exc.exit_code)
            fail(exc.format_message(), exc.exit_code)
        except (typer.Abort, KeyboardInterrupt):
            fail(interrupted_message(self.argv), 130)
        except CifarkitError as exc:
            fail(str(exc), exc.exit_code)
        except Exception as exc:
            message = tensorflow_error(exc)
            if message is None:
                raise  # a bug in cifarkit: the traceback is what its report needs
            fail(message, 1)
        sys.exit(result if isinstance(result, int) else 0)

    def invoke(self, ctx):
        # Typer turns Ctrl-C into a silent exit code 130 before main() could see it.
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            fail(interrupted_message(getattr(self, "argv", sys.argv[1:])), 130)


# Commands whose finished work survives Ctrl-C, and what re-running them does.
_RESUMABLE = {
    "export": "the images and shards already written are kept; the same command resumes the export",
    "train": "the run's last backup is kept; the same command resumes training from it",
    "download": "the bytes already fetched are kept; the same command resumes the download",
}


def interrupted_message(argv: list[str]) -> str:
    """What Ctrl-C leaves behind, and the command that carries on where there is one."""
    import shlex

    command = next((a for a in argv if not a.startswith("-")), "")
    kept = _RESUMABLE.get(command)
    if kept is None:
        return "interrupted"
    return f"interrupted; {kept}: cifarkit {shlex.join(argv)}"


# TensorFlow's runtime errors that bad input or a small machine cause, with what to do about them.
_TENSORFLOW_HINTS = {
    "DataLossError": "the data is corrupt (re-export or re-download it)",
    "ResourceExhaustedError": "out of memory (try a smaller --batch-size)",
}


def tensorflow_error(exc: Exception) -> str | None:
    """One line for an error TensorFlow raised while running (a corrupt record, an exhausted
    device): its first line, without the graph's node names. None for anything else."""
    tf = sys.modules.get("tensorflow")
    if tf is None or not isinstance(exc, tf.errors.OpError):
        return None
    from ..data import source_error_in

    named = source_error_in(exc)  # a file that cifarkit's own reader refused inside tf.data
    if named is not None:
        return str(named)
    from ..formats.tfrecord_read import name_undecodable_image

    undecodable = name_undecodable_image(exc.message or "")  # an image in a record: name its shard
    if undecodable is not None:
        return f"the data is corrupt (re-export or re-download it): {undecodable}"
    text = re.sub(r"\{\{[^}]*\}\}", "", exc.message or "")  # {{function_node ...}} {{node ...}}
    text = re.split(r"\s*\[\[|\s*\[Op:", text)[0]  # [[...]] node context, [Op:...] suffix
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    kind = type(exc).__name__
    if kind == "DataLossError" and lines:  # TensorFlow gives the offset only: name the shard
        from ..data import name_corrupt_shard

        lines[0] = name_corrupt_shard(lines[0])
    what = _TENSORFLOW_HINTS.get(kind, "TensorFlow failed")
    return f"{what}: {lines[0] if lines else kind} ({kind})"


def fail(message: str, code: int) -> None:
    # One line, whatever a library's message held (grep, log scrapers and people read it so).
    message = " ".join(line.strip() for line in message.splitlines() if line.strip())
    message = message.replace(": Value error, ", ": ")  # Click's wording around an enum's refusal
    typer.echo(f"cifarkit: error: {message}", err=True)
    sys.exit(code)


app = typer.Typer(
    cls=_OneLineErrors,
    help="CIFAR-10/100 read safely, exported fast, fed to TensorFlow.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _print_version(value: bool) -> None:
    if value:
        from .._version import __version__

        typer.echo(f"cifarkit {__version__}")
        raise typer.Exit()


@app.callback()
def _cifarkit(
    version: Annotated[
        bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """CIFAR-10/100 read safely, exported fast, fed to TensorFlow."""

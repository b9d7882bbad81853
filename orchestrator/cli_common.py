"""What every llem command shares: exit codes, the two consoles, one error path.

Exit codes: 0 ok, 1 a run failed (or, for ``llem compare``, a regression), 2 bad input, 130
interrupted. With ``--json`` an error is also a JSON object on stdout (message, fix, exit code),
with the same exit code.
"""

from __future__ import annotations

import json
import math
import sys
from typing import Any, NoReturn

import click
from rich.console import Console

from harness.errors import LlemError

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130
# Piped output gets a wide fixed width instead of rich's 80 columns, so tables stay readable.
out = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, soft_wrap=True)


def fail(error: LlemError | str, code: int = EXIT_BAD_INPUT) -> NoReturn:
    """Print one clear message (cause, then fix) and exit; with --json, also as JSON on stdout."""
    err.print(f"[bold red]error:[/] {error}", highlight=False, markup=True)
    context = click.get_current_context(silent=True)
    if context is not None and context.params.get("as_json"):
        if isinstance(error, LlemError):
            _echo_error(error.message, error.fix, code)
        else:
            _echo_error(error, None, code)
    sys.exit(code)


def _echo_error(message: str, fix: str | None, code: int) -> None:
    """The error object ``--json`` prints on stdout: message, fix (or null) and exit code."""
    click.echo(json.dumps({"error": message, "fix": fix, "exit_code": code}, indent=1))


class JsonCommand(click.Command):
    """A command with a ``--json`` flag: with it, every error is a JSON object on stdout too.

    :func:`fail` prints llem's own errors so; this class adds click's usage errors (raised
    before the flag is parsed, so the raw arguments tell) and unexpected exceptions. The exit
    code and the message on stderr are the same as without ``--json``.
    """

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        """Parse as click does; a usage error is also printed as JSON under ``--json``."""
        # read before parsing, which consumes ``args``
        as_json = "--json" in (args[:args.index("--")] if "--" in args else args)
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as error:
            if as_json:
                _echo_error(error.format_message(), _usage_fix(error), error.exit_code)
            raise

    def invoke(self, ctx: click.Context) -> Any:
        """Invoke as click does; any error is also printed as JSON under ``--json``."""
        try:
            return super().invoke(ctx)
        except click.exceptions.Exit:
            raise
        except click.ClickException as error:
            if ctx.params.get("as_json"):
                _echo_error(error.format_message(), None, error.exit_code)
            raise
        except (click.Abort, KeyboardInterrupt):  # click prints "Aborted!" and exits 1
            if ctx.params.get("as_json"):
                _echo_error("aborted", None, EXIT_FAILED)
            raise
        except Exception as error:  # a bug: the traceback still goes to stderr, exit 1
            if ctx.params.get("as_json"):
                _echo_error(f"unexpected {type(error).__name__}: {error}",
                            "report it with the traceback printed on stderr", EXIT_FAILED)
            raise


class Percent(click.ParamType[float]):
    """A finite, non-negative percentage (click's FloatRange lets NaN and inf through)."""

    name = "pct"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> float:
        """The value as a float; a usage error (exit 2) unless finite and >= 0."""
        try:
            pct = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        if not math.isfinite(pct) or pct < 0:
            self.fail(f"{value!r} is not a finite percentage >= 0", param, ctx)
        return pct


PERCENT = Percent()


def _usage_fix(error: click.UsageError) -> str | None:
    """Click's own hint under a usage error, or None where it prints none."""
    ctx = error.ctx
    if ctx is None or ctx.command.get_help_option(ctx) is None:
        return None
    option = max(ctx.command.get_help_option_names(ctx), key=len)
    return f"Try '{ctx.command_path} {option}' for help."

"""`flask` commands for operators: one-off setup, the loaded plugins, the pipeline's status, and
the dead letters (list, show, replay, drop; kept DEAD_LETTER_DAYS).

Every command fails in one line (`error: ...`, exit status 1), never with a traceback: Redis
down, a store unreachable, a dead letter that is not there.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import IO, Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import click
import orjson
import redis
from flask import Flask, current_app
from flask.cli import AppGroup, with_appcontext

from gateway import dead_letters as letters
from gateway import pipeline_status
from gateway.context import Gateway
from gateway.redis_client import Outage
from plugins.store import Store, StoreUnavailable

log = logging.getLogger("gateway.cli")

Command = TypeVar("Command", bound=Callable[..., Any])


def _gateway() -> Gateway:
    return current_app.extensions["gateway"]


class OneLineError(click.ClickException):
    """Shown as `error: <message>` on stderr, exit status 1."""

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"error: {self.format_message()}", file=file, err=True)


def redacted(url: str) -> str:
    """A URL without its password, to be shown."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def one_line_errors(command: Command) -> Command:
    """Turn what an operator can meet (Redis or a store down, a bad name or filter) into one line."""

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except (click.ClickException, click.Abort, click.exceptions.Exit):
            raise
        except redis.ConnectionError as error:
            url = redacted(_gateway().settings.redis_url)
            raise OneLineError(f"Redis at {url} is not reachable ({error})") from None
        except redis.RedisError as error:
            url = redacted(_gateway().settings.redis_url)
            raise OneLineError(f"Redis at {url} failed: {type(error).__name__}: {error}") from None
        except StoreUnavailable as error:
            raise OneLineError(f"a store is not reachable ({error})") from None
        except letters.DeadLetterError as error:
            raise OneLineError(str(error)) from None
        except Exception as error:  # noqa: BLE001 - the CLI's promise: one line, never a traceback
            raise OneLineError(f"{type(error).__name__}: {error}") from None

    return run  # type: ignore[return-value]


def _json(value: Any, *, indent: bool = False) -> str:
    return orjson.dumps(value, option=orjson.OPT_INDENT_2 if indent else 0).decode()


@click.command("setup")
@click.option(
    "--wait",
    "wait_seconds",
    default=600.0,
    show_default=True,
    help="Seconds to wait for Redis and the stores while they are down or loading; 0: fail at once.",
)
@with_appcontext
@one_line_errors
def setup_command(wait_seconds: float) -> None:
    """Create consumer groups and store tables; safe to run on every release. Waits for Redis
    and the stores while they are down or loading (one log line per outage), up to --wait."""
    gw = _gateway()
    deadline = time.monotonic() + wait_seconds
    _until_done(gw.ensure_groups, Outage(log, "setup: Redis"), _redis_down, deadline)
    for store in gw.stores.by_name.values():
        _until_done(store.setup, Outage(log, f"setup: store {store.name}"), _store_down(store), deadline)
    click.echo(f"ready: {gw.settings.partitions} partitions, stores {', '.join(gw.stores.by_name)}")


@click.command("plugins")
@with_appcontext
@one_line_errors
def plugins_command() -> None:
    """List the loaded plugins (JSON): name, module, package, version and hooks."""
    click.echo(_json(_gateway().plugins.describe(), indent=True))


@click.command("status")
@click.option("--json", "as_json", is_flag=True, help="The snapshot as JSON, for scripts.")
@with_appcontext
@one_line_errors
def status_command(as_json: bool) -> None:
    """Backlog and oldest pending age per partition, workers and their partitions, dead letters."""
    snap = pipeline_status.snapshot(_gateway())
    click.echo(_json(snap, indent=True) if as_json else pipeline_status.format_text(snap))


dead_letters = AppGroup(
    "dead-letters", help="Commands that failed after their retries, kept with their payload and error."
)


def _filter_options(command: Command) -> Command:
    command = click.option(
        "--since",
        help="Failed at or after: an ISO time (2026-12-04T17:00:00Z) or a duration back (30m, 1h, 2d).",
    )(command)
    command = click.option("--error", help="The error type, or a part of the error text (any case).")(command)
    return click.option("--collection", help="Of this collection only.")(command)


def _filters(collection: str | None, error: str | None, since: str | None) -> letters.Filters:
    return letters.Filters(collection=collection, error=error, since_ms=letters.parse_since(since))


@dead_letters.command("list")
@_filter_options
@click.option("--limit", default=100, show_default=True, help="At most this many (the oldest failures).")
@one_line_errors
def list_dead(collection: str | None, error: str | None, since: str | None, limit: int) -> None:
    """Print the dead letters that match, one JSON object a line, oldest failure first."""
    for letter in letters.matching(_gateway(), _filters(collection, error, since), limit):
        click.echo(_json(letter.shown()))


@dead_letters.command("show")
@click.argument("dead_letter")
@one_line_errors
def show(dead_letter: str) -> None:
    """Print one dead letter (as `list` names it), indented."""
    click.echo(_json(letters.get(_gateway(), dead_letter).shown(), indent=True))


def _chosen(
    verb: str,
    name: str | None,
    everything: bool,
    filters: tuple[str | None, str | None, str | None],
    yes: bool,
) -> tuple[Gateway, letters.Chosen] | None:
    """The dead letters a replay or drop takes: one by name, or with --all every one matching
    the filters, once the operator confirmed their number; None when none matches."""
    if everything == (name is not None):
        raise OneLineError(f"{verb} needs a dead letter's name, or --all (with filters)")
    if any(filters) and not everything:
        raise OneLineError("--collection, --error and --since go with --all")
    gw = _gateway()
    chosen = letters.Chosen(name, _filters(*filters))
    if name is None:
        count = len(letters.matching(gw, chosen.filters))
        if not count:
            click.echo("no dead letter matches")
            return None
        if not yes:
            click.confirm(f"{verb} {count} dead letters?", abort=True)
    return gw, chosen


def _choice_options(command: Command) -> Command:
    command = click.option("--yes", is_flag=True, help="Do not ask for confirmation.")(command)
    command = _filter_options(command)
    command = click.option(
        "--all", "everything", is_flag=True, help="Every dead letter matching the filters."
    )(command)
    return click.argument("dead_letter", required=False)(command)


@dead_letters.command("replay")
@_choice_options
@one_line_errors
def replay(
    dead_letter: str | None,
    everything: bool,
    collection: str | None,
    error: str | None,
    since: str | None,
    yes: bool,
) -> None:
    """Accept dead letters' commands again, as new commands of the same users; each dead letter
    is removed once its command is accepted."""
    chosen = _chosen("replay", dead_letter, everything, (collection, error, since), yes)
    for done in letters.replay_chosen(*chosen) if chosen else ():
        click.echo(f"replayed {done.dead_letter} as command {done.command_id}")


@dead_letters.command("drop")
@_choice_options
@one_line_errors
def drop(
    dead_letter: str | None,
    everything: bool,
    collection: str | None,
    error: str | None,
    since: str | None,
    yes: bool,
) -> None:
    """Forget dead letters that will not be replayed (their commands stay `failed`)."""
    chosen = _chosen("drop", dead_letter, everything, (collection, error, since), yes)
    if chosen:
        dropped = letters.drop_chosen(*chosen)
        click.echo(f"dropped {dead_letter}" if dead_letter else f"dropped {dropped} dead letters")


def _until_done(
    step: Callable[[], object], outage: Outage, is_outage: Callable[[Exception], bool], deadline: float
) -> None:
    """Run `step` until it succeeds, waiting with backoff after each failure that `is_outage`
    until `deadline` (monotonic); any other failure (a real error: the release must fail), or
    an outage past the deadline, is raised."""
    while True:
        try:
            step()
        except Exception as error:
            if not is_outage(error) or time.monotonic() >= deadline:
                raise
            time.sleep(outage.down(error))
            continue
        outage.up()
        return


def _redis_down(error: Exception) -> bool:
    """Redis cannot be reached or is still loading its data (BusyLoadingError is a ConnectionError)."""
    return isinstance(error, redis.ConnectionError | redis.TimeoutError)


def _store_down(store: Store) -> Callable[[Exception], bool]:
    """Whether a failure of `store` is an outage: it says so, or it no longer answers a ping."""

    def is_outage(error: Exception) -> bool:
        if isinstance(error, StoreUnavailable):
            return True
        try:
            store.ping()
        except Exception:  # noqa: BLE001 - any failure to answer is an outage
            return True
        return False

    return is_outage


def init_app(app: Flask) -> None:
    app.cli.add_command(setup_command)
    app.cli.add_command(plugins_command)
    app.cli.add_command(status_command)
    app.cli.add_command(dead_letters)

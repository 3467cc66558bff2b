"""`flask` commands for operators: one-off setup, the loaded plugins, and the dead letters (list,
replay, drop; kept DEAD_LETTER_DAYS)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import click
import orjson
import redis
from flask import Flask, current_app
from flask.cli import AppGroup, with_appcontext

from gateway import record
from gateway.accept import BacklogFull, TooManyPending, accept, prepare
from gateway.context import Gateway
from gateway.redis_client import Outage
from plugins.store import Store, StoreUnavailable

log = logging.getLogger("gateway.cli")


def _gateway() -> Gateway:
    return current_app.extensions["gateway"]


@click.command("setup")
@with_appcontext
def setup_command() -> None:
    """Create consumer groups and store tables; safe to run on every release. Waits for Redis
    and the stores while they are down or loading (one log line per outage)."""
    gw = _gateway()
    _until_done(gw.ensure_groups, Outage(log, "setup: Redis"), _redis_down)
    for store in gw.stores.by_name.values():
        _until_done(store.setup, Outage(log, f"setup: store {store.name}"), _store_down(store))
    click.echo(f"ready: {gw.settings.partitions} partitions, stores {', '.join(gw.stores.by_name)}")


@click.command("plugins")
@with_appcontext
def plugins_command() -> None:
    """List the loaded plugins (JSON): name, module, package, version and hooks."""
    gw = _gateway()
    click.echo(orjson.dumps(gw.plugins.describe(), option=orjson.OPT_INDENT_2).decode())


dead_letters = AppGroup(
    "dead-letters", help="Commands that failed after their retries, kept with their payload and error."
)


@dead_letters.command("list")
@click.option("--limit", default=100, show_default=True)
def list_dead(limit: int) -> None:
    """Print the dead letters, one JSON object a line."""
    gw = _gateway()
    shown = 0
    for partition in range(gw.settings.partitions):
        for entry_id, fields in gw.redis.xrange(gw.keys.dead(partition), count=limit - shown):
            click.echo(orjson.dumps({"dead_letter": f"{partition}/{entry_id}", **fields}).decode())
            shown += 1
        if shown >= limit:
            break


@dead_letters.command("replay")
@click.argument("dead_letter")
def replay(dead_letter: str) -> None:
    """Accept a dead letter's command again, as a new command of the same user."""
    gw = _gateway()
    stream, entry_id, fields = _dead_letter(gw, dead_letter)
    try:
        dead = record.dead_command(fields)
    except record.PayloadNotKept as error:
        raise click.ClickException(f"{dead_letter} cannot be replayed: {error}") from error
    call = prepare(gw, dead.user, dead.op, dead.collection, dead.entity_id, dead.payload)
    try:
        result = accept(gw, call)
    except (TooManyPending, BacklogFull) as error:
        why = "the user is at MAX_PENDING_PER_USER" if isinstance(error, TooManyPending) else "backlog full"
        raise click.ClickException(f"{dead_letter} not replayed ({why}); try again later") from error
    gw.redis.xdel(stream, entry_id)
    click.echo(f"replayed as command {result.command_id}")


@dead_letters.command("drop")
@click.argument("dead_letter")
def drop(dead_letter: str) -> None:
    """Forget a dead letter (its command stays `failed`)."""
    gw = _gateway()
    stream, entry_id, _ = _dead_letter(gw, dead_letter)
    gw.redis.xdel(stream, entry_id)
    click.echo(f"dropped {dead_letter}")


def _dead_letter(gw: Gateway, dead_letter: str) -> tuple[str, str, dict[str, str]]:
    """The stream, entry id and fields of a dead letter named as `list` prints it."""
    partition, _, entry_id = dead_letter.partition("/")
    if not partition.isdigit() or int(partition) >= gw.settings.partitions or not entry_id:
        raise click.ClickException(f"{dead_letter!r} is not a dead letter: <partition>/<entry id>, as listed")
    stream = gw.keys.dead(int(partition))
    try:
        entries = gw.redis.xrange(stream, min=entry_id, max=entry_id)
    except redis.ResponseError as error:  # not a stream entry id
        raise click.ClickException(f"{dead_letter!r} is not a dead letter: {error}") from error
    if not entries:
        raise click.ClickException(f"no dead letter {dead_letter}")
    return stream, entry_id, entries[0][1]


def _until_done(step: Callable[[], object], outage: Outage, is_outage: Callable[[Exception], bool]) -> None:
    """Run `step` until it succeeds, waiting with backoff after each failure that `is_outage`;
    any other failure (a real error: the release must fail) is raised."""
    while True:
        try:
            step()
        except Exception as error:
            if not is_outage(error):
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
    app.cli.add_command(dead_letters)

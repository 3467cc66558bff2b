"""`flask` commands for operators: one-off setup, the loaded plugins, and the dead letters (list,
replay, drop; kept DEAD_LETTER_DAYS)."""

from __future__ import annotations

import click
import orjson
import redis
from flask import Flask, current_app
from flask.cli import AppGroup, with_appcontext

from gateway import record
from gateway.accept import BacklogFull, TooManyPending, accept, prepare
from gateway.context import Gateway


def _gateway() -> Gateway:
    return current_app.extensions["gateway"]


@click.command("setup")
@with_appcontext
def setup_command() -> None:
    """Create consumer groups and store tables; safe to run on every release."""
    gw = _gateway()
    gw.ensure_groups()
    for store in gw.stores.by_name.values():
        store.setup()
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


def init_app(app: Flask) -> None:
    app.cli.add_command(setup_command)
    app.cli.add_command(plugins_command)
    app.cli.add_command(dead_letters)

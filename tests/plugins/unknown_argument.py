"""Test plugin: a hook asking for an argument its hook does not have, which must fail the start."""

from plugins.hookspecs import hookimpl


@hookimpl
def register_stores(settings, app):  # noqa: ANN001, ANN201 - `app` is no argument of the hook
    return []

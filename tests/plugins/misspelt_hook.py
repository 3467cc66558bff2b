"""Test plugin: a hook name with a typo (`register_store`), which must fail the start."""

from plugins.hookspecs import hookimpl


@hookimpl
def register_store(settings):  # noqa: ANN001, ANN201 - misspelt on purpose: register_stores
    return []

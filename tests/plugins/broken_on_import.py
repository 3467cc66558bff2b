"""Test plugin: a module that fails when imported, to show that a disabled plugin is not."""

raise RuntimeError("tests.plugins.broken_on_import was imported")

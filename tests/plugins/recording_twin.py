"""Test plugin: a second notifier named `recording`, which the plugin manager must refuse."""

from __future__ import annotations

from plugins.hookspecs import hookimpl
from plugins.notifier import Notifier
from settings import Settings
from tests.plugins.recording_notifier import RecordingNotifier


@hookimpl
def register_notifiers(settings: Settings) -> list[Notifier]:
    return [RecordingNotifier(settings)]

"""Notifications of finished commands to their owners: WebSocket, Server-Sent Events, devices.

The worker writes each event once (`finish.lua`); this package serves it to the web clients
(`hub`, `ws`, `sse`) and takes the devices that push notifiers send to (`devices`). The event
type is the plugin contract's (`plugins.events`); this module imports nothing at load time.
"""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Attach the process's hub (`app.extensions["notify"]`) and the notification routes."""
    from gateway.notify import devices, sse, ws
    from gateway.notify.hub import Hub

    gw = app.extensions["gateway"]
    app.extensions["notify"] = hub = Hub(gw)
    gw.process_report.count_streams(hub.open_streams)
    ws.init_app(app)
    app.register_blueprint(sse.bp)
    app.register_blueprint(devices.bp)

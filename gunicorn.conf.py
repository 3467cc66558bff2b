"""Gunicorn settings for the `web` process; gunicorn reads this file from the working directory.

Every value is here for a reason given beside it. Settings come from the environment the
platform sets (`PORT`, `WEB_CONCURRENCY`), so the same file serves a laptop and a dyno.
"""

import os

# The platform tells each web process the port to listen on; all interfaces, since its router
# connects from outside the container. 5000 is the local default (`make run`, honcho).
bind = f"0.0.0.0:{os.environ.get('PORT', '5000')}"

# Processes: Heroku sets WEB_CONCURRENCY from the dyno's memory. Two is enough for a small box and
# keeps one process serving while the other restarts.
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))

# gevent: every connection is a greenlet, so open WebSockets and SSE streams (each one waiting for
# its user's next event) cost a few kB each instead of a thread each, and never starve plain
# requests. A request mostly waits on Redis or a store, and those waits yield too: gunicorn
# monkey-patches the standard library before it loads the app, so redis-py's sockets, psycopg 3
# (it detects gevent and waits cooperatively), PyMySQL and the threads of flask-sock and of the
# notification hub all become cooperative. With gthread each WebSocket would hold two threads.
# gateway.web_server.GeventWorker is gunicorn's gevent worker that answers gunicorn's own
# refusals (a malformed request line, headers too large) as RFC 9457 problems, like every other
# answer, instead of an HTML page.
worker_class = "gateway.web_server.GeventWorker"

# Concurrent connections per process, streams and plain requests together. 2,000 leaves room
# for 1,000 open WebSockets or SSE streams (the figure measured in docs/notifications.md) and
# the requests beside them; past it the process stops accepting until one closes. Each one is
# a file descriptor: the platform's limit (10,000 on Heroku) must exceed this.
worker_connections = int(os.environ.get("WORKER_CONNECTIONS", "2000"))

# No preloading: each process opens its own Redis and database connections after the fork,
# so no socket is shared between processes.
preload_app = False

# A process whose event loop has not come round for this long is stuck (with gevent this does
# not limit a request or a stream, only a process that stopped switching), so the arbiter
# restarts it. Heroku's router gives up on a request after 30 s anyway.
timeout = 30

# On SIGTERM, finish in-flight requests within 20 s: below the 30 s Heroku gives a dyno between
# SIGTERM and SIGKILL, so nothing is cut off mid-response by the platform.
graceful_timeout = 20

# Keep idle connections longer than a load balancer in front keeps them, so the balancer, not
# gunicorn, closes them: a connection closed just as the balancer reuses it fails a request.
keepalive = 100

# Access log to stdout: the platform collects stdout (`heroku logs`, honcho's console).
accesslog = "-"
# The default format logs the query string, and SSE and WebSocket clients send their bearer
# token as `?token=`: log the path alone (%(U)s), so no token reaches the platform's logs.
access_log_format = '%(h)s %(l)s %(u)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(b)s "%(f)s" "%(a)s" %(L)s'
# Escapes what a client controls (a `%0A` in a path would otherwise start a forged log line)
# and keeps FCM registration tokens out of the log (gateway/web_server.py).
logger_class = "gateway.web_server.AccessLogger"

# X-Forwarded-Proto is believed only from these addresses (a client could set it otherwise,
# and so turn on HSTS or https links). Loopback by default; on Heroku the router's addresses
# are not fixed and a dyno is reachable only through it: set FORWARDED_ALLOW_IPS='*' there.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")
# Only X-Forwarded-Proto, which routers overwrite: gunicorn also knows X-Forwarded-Ssl and
# X-Forwarded-Protocol, which a router passes on as the client sent them.
secure_scheme_headers = {"X-FORWARDED-PROTO": "https"}
# No SCRIPT_NAME or PATH_INFO from headers: nothing here is mounted under a prefix, and a
# client could otherwise rewrite the app's URLs (Location) through a trusting router.
forwarder_headers = ""

# No control socket: nothing here uses gunicornc, and several web processes on one machine
# would contend for its one default path in the home directory.
control_socket_disable = True


def post_worker_init(worker):
    """On SIGTERM, end the open WebSockets (close code 1001, going away) and SSE streams at once,
    after gunicorn's own handler stopped accepting: they would otherwise hold the process for the
    whole graceful_timeout and then be cut without a close frame. Clients reconnect, to another
    process, with their last event id, and miss nothing."""
    import signal

    hub = worker.wsgi.extensions.get("notify") if hasattr(worker.wsgi, "extensions") else None
    gunicorns_handler = signal.getsignal(signal.SIGTERM)

    def on_sigterm(signum, frame):
        gunicorns_handler(signum, frame)
        if hub is not None:
            _in_background(hub.shutdown)  # a signal handler must not block (nor switch greenlets)

    signal.signal(signal.SIGTERM, on_sigterm)


def _in_background(function):
    """Run `function` in a greenlet under gevent (as gunicorn's own handlers do), else a thread."""
    import threading

    try:
        import gevent
        from gevent import monkey
    except ImportError:
        gevent = None
    if gevent is not None and monkey.is_module_patched("threading"):
        gevent.spawn(function)
    else:
        threading.Thread(target=function, daemon=True).start()

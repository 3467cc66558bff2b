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

# Threads, not one request per process: a request mostly waits on Redis or a store, and later
# long-lived streams (SSE, WebSockets) must not starve plain requests. A change to gevent for
# WebSockets would set worker_class = "gevent" and worker_connections instead of threads.
worker_class = "gthread"
threads = 8

# No preloading: each process opens its own Redis and database connections after the fork,
# so no socket is shared between processes.
preload_app = False

# A request that takes longer than this is stuck (accepting a command is one Redis call);
# Heroku's router gives up on a request after 30 s anyway, so the process is restarted then.
timeout = 30

# On SIGTERM, finish in-flight requests within 20 s: below the 30 s Heroku gives a dyno between
# SIGTERM and SIGKILL, so nothing is cut off mid-response by the platform.
graceful_timeout = 20

# Keep idle connections longer than a load balancer in front keeps them, so the balancer, not
# gunicorn, closes them: a connection closed just as the balancer reuses it fails a request.
keepalive = 100

# Access log to stdout: the platform collects stdout (`heroku logs`, honcho's console).
accesslog = "-"

# The platform's router addresses are not fixed and the dyno is reachable only through it, so
# trust its X-Forwarded-* headers: request.scheme is then https for TLS clients.
forwarded_allow_ips = "*"

# No control socket: nothing here uses gunicornc, and several web processes on one machine
# would contend for its one default path in the home directory.
control_socket_disable = True

#!/bin/sh
# The stack's `db` health check calls healthcheck.sh (the MariaDB image's name);
# for HAProxy it means: the proxy answers on its health page. Arguments are ignored.
exec curl -fsS -o /dev/null http://127.0.0.1:8404/healthz

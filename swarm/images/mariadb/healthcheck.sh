#!/bin/sh
# Same name and purpose as the official image's check: healthy once the server
# accepts a TCP login (as the USAGE-only user made on first start).
exec mariadb-admin --defaults-extra-file=/var/lib/mysql/.my-healthcheck.cnf ping --silent

#!/bin/sh
# Start Traefik with the EMS static configuration. HTTPS (Let's Encrypt, with
# HTTP redirected to it) is switched on when EMS_DOMAIN and EMS_ACME_EMAIL are set.
set -e
set -- \
  --providers.swarm=true \
  --providers.swarm.exposedByDefault=false \
  --providers.swarm.network="${EMS_TRAEFIK_NETWORK}" \
  --entrypoints.web.address=:80 \
  --ping=true \
  --accesslog=true \
  --log.level=INFO
if [ -n "${EMS_DOMAIN}" ] && [ -n "${EMS_ACME_EMAIL}" ]; then
  set -- "$@" \
    --entrypoints.websecure.address=:443 \
    --entrypoints.web.http.redirections.entrypoint.to=websecure \
    --entrypoints.web.http.redirections.entrypoint.scheme=https \
    --entrypoints.websecure.http.tls.certresolver=letsencrypt \
    --entrypoints.websecure.http.tls.domains[0].main="${EMS_DOMAIN}" \
    --certificatesresolvers.letsencrypt.acme.email="${EMS_ACME_EMAIL}" \
    --certificatesresolvers.letsencrypt.acme.storage=/letsencrypt/acme.json \
    --certificatesresolvers.letsencrypt.acme.tlschallenge=true
fi
exec traefik "$@"

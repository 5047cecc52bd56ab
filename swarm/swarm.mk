# Docker Swarm targets (included by the Makefile). See "Deploy on Docker Swarm" in README.md.
#   make swarm-up                      build the image, create secrets, deploy
#   make swarm-down                    remove the stack (volumes and secrets stay)
#   make swarm-scale-monitors N=5      monitors to 5 (the balancer hears them join or leave)
#   make swarm-test                    the whole stack, for real, on this machine
#   make swarm-cluster-test            three nodes on this machine, each killed once mid-stream
SWARM_STACK ?= ems
EMS_IMAGE ?= ems:latest
export SWARM_STACK EMS_IMAGE

.PHONY: swarm-build swarm-secrets swarm-up swarm-down swarm-scale-monitors swarm-test swarm-cluster-test

## swarm-build: build the one EMS image (EMS_IMAGE, default ems:latest)
swarm-build:
	bash swarm/build.sh $(EMS_IMAGE)

## swarm-secrets: create the Docker secrets the stack needs (once per swarm)
swarm-secrets:
	bash swarm/secrets.sh

## swarm-up: deploy (or update) the stack; set EMS_DOMAIN and EMS_ACME_EMAIL for HTTPS
swarm-up: swarm-build swarm-secrets
	docker stack deploy --prune -c swarm/stack.yml $(SWARM_STACK)

## swarm-down: remove the stack; named volumes and secrets are kept
swarm-down:
	docker stack rm $(SWARM_STACK)

## swarm-scale-monitors: N monitor replicas; waits until the queues of removed slots are deleted
swarm-scale-monitors:
	@test -n "$(N)" || { echo "usage: make swarm-scale-monitors N=<replicas>" >&2; exit 2; }
	bash swarm/scale-monitors.sh $(N)

## swarm-test: dockerd, local images from Debian's packages, deploy, check, tear down
swarm-test: setup
	bash swarm/test.sh

## swarm-cluster-test: three Docker-in-Docker managers, Galera, a RabbitMQ cluster, nodes killed mid-stream
swarm-cluster-test: setup
	bash swarm/cluster-test.sh

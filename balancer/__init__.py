"""The load balancer: routes every valid reading to one monitor replica's ingest queue."""

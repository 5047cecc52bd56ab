"""Code shared by every EMS service: settings, RabbitMQ topology and helpers,
message schemas, JWT verification and structured logging."""

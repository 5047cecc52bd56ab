"""The notifier: EMS's only WebSocket endpoint (Flask-SocketIO).

It authenticates sockets from the portal's JWT, keeps one room per user plus
the admins' room, forwards chat events to `support` over AMQP and bridges
over-consumption alerts from RabbitMQ (STOMP) to the browsers. The wiring is
in `notifier.app`; this package file imports nothing, because `python -m
notifier` must monkey-patch the standard library before Flask is imported.
"""

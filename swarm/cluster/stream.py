"""The cluster test's meters: one confirmed reading per device per second until SIGTERM.

Runs in a container of the EMS image on the test's network, outside the swarm
(swarm/cluster_check.py starts it), publishing as the simulator's broker user
to the brokers' ports on the nodes. Each confirmed reading's key goes to --out
as "device_id timestamp_ms"; one not confirmed (broker lost, refused) is kept
and sent first in the next round, as the simulator's live mode does. Prints a
JSON summary at the end.

    python stream.py --devices devices.txt --out confirmed.txt
"""

import argparse
import json
import signal
import sys
import threading
import time

READING_KWH = 0.001  # the same for every reading: an hourly total counts its readings


def stream(arguments) -> int:
    """Send until told to stop, then give the backlog a last minute; print the summary."""
    sys.path.insert(0, "/app")
    from common.amqp import CONNECTION_ERRORS, ConfirmingPublisher, PublishNotConfirmed
    from common.messages import Reading
    from common.settings import load_settings
    from common.topology import READING_ROUTING_KEY, READINGS_EXCHANGE

    settings = load_settings(service="simulator")
    devices = open(arguments.devices).read().split()
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    publisher = ConfirmingPublisher(settings, declare=False)
    backlog: list[Reading] = []
    summary = {"sent": 0, "confirmed": 0, "failures": 0}
    started = time.monotonic()
    rounds = 0
    with open(arguments.out, "w") as confirmed:
        def send_backlog() -> None:
            while backlog:
                try:
                    publisher.publish(READINGS_EXCHANGE, READING_ROUTING_KEY, backlog[0].to_json())
                except (PublishNotConfirmed, *CONNECTION_ERRORS):
                    summary["failures"] += 1
                    publisher.close()
                    return
                reading = backlog.pop(0)
                confirmed.write(f"{reading.device_id} {reading.timestamp}\n")
                summary["confirmed"] += 1
            confirmed.flush()

        while not stopping.is_set():
            at = int(time.time() * 1000)
            backlog += [Reading(at, device, READING_KWH) for device in devices]
            summary["sent"] += len(devices)
            send_backlog()
            rounds += 1
            stopping.wait(max(0.0, started + rounds * arguments.interval - time.monotonic()))
        # Told to stop: what was made but not confirmed yet gets a last minute.
        deadline = time.monotonic() + 60
        while backlog and time.monotonic() < deadline:
            send_backlog()
            if backlog:
                time.sleep(1)
    summary["unconfirmed"] = len(backlog)
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", required=True, help="file of device ids, one per line")
    parser.add_argument("--out", required=True, help="file for the confirmed readings' keys")
    parser.add_argument("--interval", type=float, default=1.0)
    sys.exit(stream(parser.parse_args()))

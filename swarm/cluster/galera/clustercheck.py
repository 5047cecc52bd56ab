#!/usr/bin/python3
"""HTTP health of this Galera node for HAProxy (port 9200): 200 while Synced and ready.

A node that is joining, donating with blocked queries or cut off from the primary
component answers 503, so HAProxy sends writes to the next node in its list.
"""

import subprocess
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

QUERY = ("SHOW GLOBAL STATUS WHERE Variable_name IN "
         "('wsrep_local_state', 'wsrep_ready', 'wsrep_cluster_status')")


def node_status() -> dict[str, str]:
    """Return the node's wsrep status variables, empty when the server does not answer."""
    try:
        output = subprocess.run(["mariadb", "-uroot", "-N", "-B", "-e", QUERY], capture_output=True,
                                text=True, timeout=3).stdout
    except subprocess.TimeoutExpired:
        return {}
    return dict(line.split("\t", 1) for line in output.splitlines() if "\t" in line)


class Check(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (the name http.server calls)
        status = node_status()
        synced = (status.get("wsrep_local_state") == "4" and status.get("wsrep_ready") == "ON"
                  and status.get("wsrep_cluster_status") == "Primary")
        body = f"{status}\n".encode()
        self.send_response(200 if synced else 503)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *arguments):
        pass


if __name__ == "__main__":
    # HAProxy asks from another task: every interface of the container (the back-end network only).
    ThreadingHTTPServer(("0.0.0.0", 9200), Check).serve_forever()  # noqa: S104

"""Docker health check of an EMS HTTP service: `python healthcheck.py PORT [PATH]`.

Healthy when the service answers HTTP at all below 500: a 302 to the login page
or a 401 from an API still proves the process serves requests.
"""

import sys
import urllib.error
import urllib.request


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def main() -> int:
    """Request the path on localhost and return the process exit status."""
    port = int(sys.argv[1])
    path = sys.argv[2] if len(sys.argv) > 2 else "/"
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        status = opener.open(f"http://127.0.0.1:{port}{path}", timeout=4).status
    except urllib.error.HTTPError as error:
        status = error.code
    except OSError as error:
        print(f"unhealthy: {error}", file=sys.stderr)
        return 1
    if status >= 500:
        print(f"unhealthy: HTTP {status}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

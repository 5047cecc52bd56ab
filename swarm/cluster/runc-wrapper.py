#!/usr/bin/python3
"""runc for the privileged cluster nodes: runc without CAP_SYS_RESOURCE.

This machine's capability bounding set lacks CAP_SYS_RESOURCE, and Docker 20.10
puts every capability in a `--privileged` container's spec (ignoring --cap-drop),
so runc fails with "unable to apply caps: operation not permitted". Registered
with dockerd as a runtime (swarm/cluster-test.sh) and used with `docker run
--runtime`, this removes the capability from the bundle's config.json (create,
run) and from the process file (exec), then becomes the real runc.
"""

import json
import os
import sys

RUNC = os.environ.get("EMS_REAL_RUNC", "/usr/sbin/runc")
MISSING = "CAP_SYS_RESOURCE"


def option_value(arguments: list[str], *names: str) -> str | None:
    """Return the value of the first of `names` given as `--name value` or `--name=value`."""
    for index, argument in enumerate(arguments):
        for name in names:
            if argument == name and index + 1 < len(arguments):
                return arguments[index + 1]
            if argument.startswith(name + "="):
                return argument.split("=", 1)[1]
    return None


def drop_capability(path: str, process_only: bool) -> None:
    """Rewrite a runtime spec (or a process spec) without the missing capability."""
    with open(path) as spec_file:
        spec = json.load(spec_file)
    process = spec if process_only else spec.get("process", {})
    capabilities = process.get("capabilities") or {}
    for kind, names in capabilities.items():
        if isinstance(names, list):
            capabilities[kind] = [name for name in names if name != MISSING]
    with open(path, "w") as spec_file:
        json.dump(spec, spec_file)


def main() -> None:
    arguments = sys.argv[1:]
    commands = [argument for argument in arguments if not argument.startswith("-")]
    if "create" in arguments or "run" in arguments:
        bundle = option_value(arguments, "--bundle", "-b") or os.getcwd()
        config = os.path.join(bundle, "config.json")
        if os.path.exists(config):
            drop_capability(config, process_only=False)
    elif "exec" in commands:
        process_file = option_value(arguments, "--process", "-p")
        if process_file and os.path.exists(process_file):
            drop_capability(process_file, process_only=True)
    os.execv(RUNC, [RUNC, *arguments])  # noqa: S606 (becomes runc, as dockerd asked)


if __name__ == "__main__":
    main()

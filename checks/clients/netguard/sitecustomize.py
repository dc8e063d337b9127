"""Loaded by every Python process of a client check (PYTHONPATH): name lookups of any host but
the loopback fail at once and are reported on stderr as `NETGUARD blocked <host>`, so a training
run can neither reach nor wait on the network, and the driver can count the attempts."""

import os
import socket
import sys
import traceback

_LOCAL = {"localhost", "::1"}  # and 127.*
_getaddrinfo = socket.getaddrinfo


def _guarded(host, *args, **kwargs):
    name = host.decode() if isinstance(host, bytes) else host
    if name not in _LOCAL and not (isinstance(name, str) and name.startswith("127.")):
        print(f"NETGUARD blocked {name}", file=sys.stderr, flush=True)
        if os.environ.get("NETGUARD_TRACE"):
            traceback.print_stack(file=sys.stderr)
        raise socket.gaierror(socket.EAI_NONAME, f"network disabled by the client check: {name}")
    return _getaddrinfo(host, *args, **kwargs)


socket.getaddrinfo = _guarded

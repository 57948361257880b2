"""A stand-in for fleet-console that the SSH front door's tests run as the session's child.

Called as ``sshfront_child.py --site SITE [COMMAND MODE [ARG]]`` (the front door adds
``--site``; an exec request gives ``status MODE ...``):

- no mode: a "console": prints ``FAKE-CONSOLE site=S pid=P size=COLSxROWS``, then a line
  ``SIZE COLSxROWS`` at every SIGWINCH and ``GOT LINE`` for each input line; ``q`` ends it
- ``env``: one JSON line with the FLEET_* variables, TERM, whether stdin is a terminal, argv
- ``exit N``: ``bye`` on stderr, exit status N
- ``cat``: stdin upper-cased to stdout once it ends
"""

import json
import os
import signal
import sys

args = sys.argv[1:]
site = "-"
if args[:1] == ["--site"]:
    site, args = args[1], args[2:]
mode = args[1] if len(args) > 1 else "console"


def size() -> str:
    s = os.get_terminal_size(0)
    return f"{s.columns}x{s.lines}"


if mode == "env":
    keys = ("FLEET_SERVICE", "FLEET_SERVICE_TOKEN", "FLEET_OPERATOR", "TERM", "FLEET_CONSOLE_READ_ONLY")
    out = {k: os.environ.get(k) for k in keys}
    out.update(tty=os.isatty(0), args=sys.argv[1:])
    print(json.dumps(out))
    sys.exit(0)
if mode == "exit":
    print("bye", file=sys.stderr)
    sys.exit(int(args[2]))
if mode == "cat":
    sys.stdout.buffer.write(sys.stdin.buffer.read().upper())
    sys.exit(0)
signal.signal(signal.SIGWINCH, lambda *a: print(f"SIZE {size()}", flush=True))
print(f"FAKE-CONSOLE site={site} pid={os.getpid()} size={size() if os.isatty(0) else '-'}", flush=True)
for line in sys.stdin:
    if line.strip() == "q":
        break
    print("GOT " + line.strip(), flush=True)

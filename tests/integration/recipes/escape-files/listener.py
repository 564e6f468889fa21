#!/usr/bin/env python3
"""TCP listeners for tests/integration/escape.sh, in the test's own network
namespace: one per ADDR:PORT argument ([v6]:port for IPv6).  Every accepted
connection is logged to LOG as "ADDR PORT PEER" and closed.  Writes READY
(a file) once all are listening.  Usage: listener.py LOG READY ADDR:PORT..."""
import selectors
import socket
import sys


def main():
    log, ready, specs = sys.argv[1], sys.argv[2], sys.argv[3:]
    sel = selectors.DefaultSelector()
    for spec in specs:
        addr, port = spec.rsplit(":", 1)
        fam = socket.AF_INET6 if addr.startswith("[") else socket.AF_INET
        addr = addr.strip("[]")
        s = socket.socket(fam, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((addr, int(port)))
        s.listen(16)
        sel.register(s, selectors.EVENT_READ, (addr, port))
    with open(ready, "w") as f:
        f.write("ready\n")
    with open(log, "a", buffering=1) as out:
        while True:
            for key, _ in sel.select():
                conn, peer = key.fileobj.accept()
                out.write("%s %s %s\n" % (key.data[0], key.data[1], peer[0]))
                conn.close()


if __name__ == "__main__":
    main()

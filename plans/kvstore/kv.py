"""kvstore (stdlib only): an in-memory key-value server with a line protocol.

    python3 kv.py KV.CONF

Commands, one a line, answers one a line: PING -> +PONG, SET k v -> +OK, GET k -> $v or -nil,
DEL k -> :count, AUTH password -> +OK or -ERR. With requirepass set every command but AUTH and PING
needs AUTH first. KV.CONF holds "key value" lines
(bind, port, tcp-backlog, max-value-bytes, requirepass).
"""

import signal
import socketserver
import sys
import threading


def load(path):
    conf = {"bind": "0.0.0.0", "port": "6380", "tcp-backlog": "128", "max-value-bytes": "65536"}
    with open(path, encoding="utf-8") as f:
        for raw in f:
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            key, _, value = line.partition(" ")
            conf[key] = value.strip()
    return conf


class Store:
    def __init__(self):
        self.lock = threading.Lock()
        self.data = {}


def make_handler(conf, store):
    password = conf.get("requirepass", "")
    max_value = int(conf["max-value-bytes"])

    class Handler(socketserver.StreamRequestHandler):
        def handle(self):
            authed = not password
            for raw in self.rfile:
                parts = raw.decode("utf-8", "replace").strip().split(" ", 2)
                cmd, args = parts[0].upper(), parts[1:]
                if cmd == "PING":
                    reply = "+PONG"
                elif cmd == "AUTH":
                    authed = bool(password) and args == [password]
                    reply = "+OK" if authed else "-ERR invalid password"
                elif not authed:
                    reply = "-NOAUTH authentication required"
                elif cmd == "SET" and len(args) == 2:
                    if len(args[1].encode()) > max_value:
                        reply = "-ERR value too large"
                    else:
                        with store.lock:
                            store.data[args[0]] = args[1]
                        reply = "+OK"
                elif cmd == "GET" and len(args) == 1:
                    with store.lock:
                        value = store.data.get(args[0])
                    reply = "-nil" if value is None else "$" + value
                elif cmd == "DEL" and len(args) == 1:
                    with store.lock:
                        reply = f":{int(store.data.pop(args[0], None) is not None)}"
                elif cmd == "QUIT":
                    self.wfile.write(b"+OK\n")
                    return
                else:
                    reply = "-ERR unknown command or wrong number of arguments"
                self.wfile.write((reply + "\n").encode())

    return Handler


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


def main(argv):
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 64
    conf = load(argv[1])
    Server.request_queue_size = int(conf["tcp-backlog"])
    server = Server((conf["bind"], int(conf["port"])), make_handler(conf, Store()))

    def stop(signum, frame):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    print(f"kvstore: listening on {conf['bind']}:{conf['port']}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

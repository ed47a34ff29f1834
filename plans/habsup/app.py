"""habsup's demo app (stdlib only): GET / -> the message, GET /health/ -> 200 JSON.

python3 app.py CONFIG.toml          serve until SIGTERM/SIGINT
python3 app.py --check CONFIG.toml  GET /health/ once: exit 0 OK, 2 CRITICAL
"""

import contextlib
import json
import signal
import sys
import tomllib
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

OK, CRITICAL = 0, 2


def load(path):
    with open(path, "rb") as f:
        http = tomllib.load(f).get("http", {})
    return {
        "listen": str(http.get("listen", "0.0.0.0")),
        "port": int(http.get("port", 8080)),
        "message": str(http.get("message", "hello from habsup")),
        "member_id": str(http.get("member_id", "")),
    }


def make_handler(cfg):
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path in ("/health", "/health/"):
                body = json.dumps({"status": "ok", "member_id": cfg["member_id"]}).encode()
                self.reply(200, "application/json", body)
            elif self.path == "/":
                self.reply(200, "text/plain; charset=utf-8", (cfg["message"] + "\n").encode())
            else:
                self.reply(404, "text/plain; charset=utf-8", b"not found\n")

        def reply(self, status, ctype, body):
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, fmt, *args):
            sys.stdout.write("habsup: " + (fmt % args) + "\n")

    return Handler


def serve(cfg):
    try:
        server = ThreadingHTTPServer((cfg["listen"], cfg["port"]), make_handler(cfg))
    except OSError as exc:
        # One line, not a traceback: the supervisor restarts us and logs every line we write.
        print(f"habsup: cannot listen on {cfg['listen']}:{cfg['port']}: {exc.strerror}", flush=True)
        return 1
    server.daemon_threads = True

    def stop(signum, frame):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    print(f"habsup: listening on {cfg['listen']}:{cfg['port']}", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0


def check(cfg):
    host = "127.0.0.1" if cfg["listen"] in ("", "0.0.0.0", "::") else cfg["listen"]
    if ":" in host:
        host = f"[{host}]"
    url = f"http://{host}:{cfg['port']}/health/"
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            print(f"{url}: {resp.status} {resp.read(200).decode(errors='replace')}")
            return OK if resp.status == 200 else CRITICAL
    except (urllib.error.URLError, OSError) as exc:
        print(f"{url}: {exc}")
        return CRITICAL


def main(argv):
    if len(argv) == 3 and argv[1] == "--check":
        return check(load(argv[2]))
    if len(argv) == 2:
        with contextlib.suppress(KeyboardInterrupt):
            return serve(load(argv[1]))
        return 0
    print(__doc__, file=sys.stderr)
    return 64


if __name__ == "__main__":
    sys.exit(main(sys.argv))

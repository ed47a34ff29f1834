"""The backend plan's service (stdlib only).

python3 backend.py CONFIG.toml DATA_DIR   serve until SIGTERM; append the start time to starts.log
python3 backend.py --check CONFIG.toml    GET /health once: exit 0 OK, 2 CRITICAL
"""

import json
import signal
import sys
import time
import tomllib
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def load(path):
    with open(path, "rb") as f:
        return tomllib.load(f)


def serve(cfg, data_dir):
    started = time.time()
    with open(Path(data_dir) / "starts.log", "a") as log:
        log.write(f"{started:.6f}\n")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            up = time.time() - started
            if self.path == "/health":
                ready = up >= float(cfg.get("warmup", 0))
                body = json.dumps({"ready": ready, "uptime": up}).encode()
                self.reply(200 if ready else 503, body)
            else:
                body = json.dumps({"member_id": cfg.get("member_id", ""), "port": cfg["port"]})
                self.reply(200, body.encode())

        def reply(self, status, body):
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, fmt, *args):
            pass

    server = ThreadingHTTPServer((cfg["listen"], int(cfg["port"])), Handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"backend: listening on {cfg['listen']}:{cfg['port']}", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()


def check(cfg):
    url = f"http://{cfg['listen']}:{cfg['port']}/health"
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return 0 if resp.status == 200 else 2
    except OSError:
        return 2


if __name__ == "__main__":
    if sys.argv[1] == "--check":
        sys.exit(check(load(sys.argv[2])))
    serve(load(sys.argv[1]), sys.argv[2])

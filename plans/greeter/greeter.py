"""greeter (stdlib only): writes "<greeting>, <name>!" to DATA_DIR/greeting.txt, reloads on SIGHUP.

    python3 greeter.py CONFIG.toml DATA_DIR PID_FILE

Each (re)load appends "started"/"reloaded" with the line to DATA_DIR/events.log. A config that
cannot be read on reload keeps the previous greeting (and logs why). SIGTERM/SIGINT exit 0 after
removing PID_FILE.
"""

import contextlib
import os
import signal
import sys
import tomllib


def render(path):
    with open(path, "rb") as f:
        cfg = tomllib.load(f)
    line = f"{cfg.get('greeting', 'Hello')}, {cfg.get('name', 'world')}!"
    return line.upper() if cfg.get("shout") else line


def write_atomic(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def main(argv):
    if len(argv) != 4:
        print(__doc__, file=sys.stderr)
        return 64
    config, data_dir, pid_file = argv[1:]
    os.makedirs(data_dir, exist_ok=True)
    greeting_file = os.path.join(data_dir, "greeting.txt")
    events = os.path.join(data_dir, "events.log")
    # Block the signals we act on and take them synchronously: no handler races, no lost SIGHUP.
    waited = {signal.SIGHUP, signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, waited)

    def load(event):
        try:
            line = render(config)
        except (OSError, tomllib.TOMLDecodeError) as exc:
            print(f"greeter: cannot load {config}: {exc}", flush=True)
            return
        write_atomic(greeting_file, line + "\n")
        with open(events, "a", encoding="utf-8") as f:
            f.write(f"{event} {line}\n")
        print(f"greeter: {event}: {line}", flush=True)

    load("started")
    os.makedirs(os.path.dirname(pid_file) or ".", exist_ok=True)
    write_atomic(pid_file, f"{os.getpid()}\n")
    try:
        while signal.sigwait(waited) == signal.SIGHUP:
            load("reloaded")
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(pid_file)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

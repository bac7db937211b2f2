"""Run the demo's three processes, web server, Celery worker and Celery beat, until Ctrl-C.

``make demo`` runs this after migrating and ``manage.py demo_setup``. Everything runs on
the embedded defaults (SQLite, Celery over the filesystem transport) unless DATABASE_URL
and CELERY_BROKER_URL say otherwise. Ctrl-C (SIGINT), SIGTERM or SIGHUP stops all three;
when one of them dies, the others are stopped too. Each child runs in its own session,
so the supervisor alone decides when they stop, and Linux's parent-death signal stops
them even if the supervisor itself is killed.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GRACE_SECONDS = 15
READY_TIMEOUT_SECONDS = 90
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def child_environment() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT), str(ROOT / "platform"), *filter(None, [env.get("PYTHONPATH")])]
    )
    env.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
    # The demo's users never see Django's debug pages (they list settings, the environment
    # and every route); static files come from collectstatic through WhiteNoise.
    env.setdefault("DJANGO_DEBUG", "False")
    env["PYTHONUNBUFFERED"] = "1"
    var_dir = Path(env.get("TESSERA_VAR_DIR") or ROOT / "var").resolve()
    # Absolute, because the children run inside it (see run_directory).
    env["TESSERA_VAR_DIR"] = str(var_dir)
    return env


def run_directory(env: dict[str, str]) -> Path:
    """The folder the children run in: kombu's filesystem transport keeps its exchange
    tables in a relative ``control`` folder, which belongs under var/, not the work tree."""
    var_dir = Path(env["TESSERA_VAR_DIR"])
    var_dir.mkdir(parents=True, exist_ok=True)
    return var_dir


def commands(*, host: str, port: int) -> dict[str, list[str]]:
    python = sys.executable
    celery = [python, "-m", "celery", "-A", "config.celery_app"]
    return {
        "web": [python, str(ROOT / "manage.py"), "runserver", f"{host}:{port}", "--noreload"],
        "worker": [*celery, "worker", "-Q", "training,default", "-P", "solo", "-l", "info",
                   "-n", "demo-worker@%h"],
        "beat": [*celery, "beat", "-l", "info",
                 "--scheduler", "django_celery_beat.schedulers:DatabaseScheduler"],
    }


def _die_with_parent() -> None:
    if sys.platform.startswith("linux"):
        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def _relay(name: str, stream) -> None:
    for line in iter(stream.readline, b""):
        sys.stdout.write(f"{name:<7}| {line.decode(errors='replace')}")
        sys.stdout.flush()


def start(name: str, argv: list[str], *, env: dict[str, str], cwd: Path) -> subprocess.Popen:
    process = subprocess.Popen(
        argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=_die_with_parent,
    )
    threading.Thread(target=_relay, args=(name, process.stdout), daemon=True).start()
    return process


def stop_all(processes: dict[str, subprocess.Popen]) -> None:
    for process in processes.values():
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + GRACE_SECONDS
    for name, process in processes.items():
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            print(f"{name} did not stop within {GRACE_SECONDS} s: killing it", flush=True)
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def web_answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status < 500
    except urllib.error.HTTPError as error:
        return error.code < 500
    except OSError:
        return False


def exposure_warning(host: str) -> str | None:
    """What to say when the demo listens beyond this machine: its passwords are published."""
    if host in LOOPBACK:
        return None
    return (f"WARNING: the demo listens on {host}, reachable from other machines, and its "
            "passwords are published in the README. Use it only on a network you trust; "
            "set DJANGO_ALLOWED_HOSTS to the name others use to reach it.")


def banner(url: str, *, listening: str | None = None) -> str:
    try:
        sys.path[:0] = [str(ROOT), str(ROOT / "platform")]
        from accounts.management.commands.demo_setup import DEMO_ORGANISATION, credential_lines

        accounts = [f"  Organisation {DEMO_ORGANISATION!r}; sign in as:", *credential_lines("    ")]
    except ImportError:  # the banner must never stop the demo
        accounts = ["  Sign in with the users that demo_setup printed above."]
    lines = [
        "",
        "=" * 64,
        f"  Tessera demo is running: {url}",
        f"  Listening on {listening or url} "
        f"({'this machine only' if not listening or _is_loopback(listening) else 'the network'})",
        f"  API docs: {url}api/v1/docs/",
        *accounts,
        "  Ctrl-C stops the web server, the worker and beat.",
        "=" * 64,
        "",
    ]
    return "\n".join(lines)


def _is_loopback(address: str) -> bool:
    return any(f"//{host}:" in address or f"//[{host}]:" in address for host in LOOPBACK)


def main() -> int:
    parser = argparse.ArgumentParser(description="Run Tessera's web server, worker and beat.")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default: this machine only)")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()

    if not port_is_free(args.host, args.port):
        print(f"Port {args.port} is in use; run `make demo PORT=8001` or stop what holds it.",
              file=sys.stderr)
        return 1

    warning = exposure_warning(args.host)
    if warning:
        print(warning, file=sys.stderr, flush=True)
    stopping = threading.Event()

    def request_stop(signum, _frame) -> None:
        if not stopping.is_set():
            print(f"\nReceived {signal.Signals(signum).name}: stopping web, worker and beat...",
                  flush=True)
        stopping.set()

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, request_stop)

    env = child_environment()
    cwd = run_directory(env)
    processes: dict[str, subprocess.Popen] = {}
    exit_code = 0
    try:
        for name, argv in commands(host=args.host, port=args.port).items():
            processes[name] = start(name, argv, env=env, cwd=cwd)
        url = f"http://127.0.0.1:{args.port}/"
        ready_by = time.monotonic() + READY_TIMEOUT_SECONDS
        announced = False
        while not stopping.is_set():
            dead = {name: p.returncode for name, p in processes.items() if p.poll() is not None}
            if dead:
                print(f"Stopping the demo: {dead} exited unexpectedly.", file=sys.stderr,
                      flush=True)
                exit_code = 1
                break
            if not announced and web_answers(f"{url}login/"):
                print(banner(url, listening=f"http://{_url_host(args.host)}:{args.port}/"),
                      flush=True)
                announced = True
            elif not announced and time.monotonic() > ready_by:
                print(f"The web server did not answer at {url} within {READY_TIMEOUT_SECONDS} s.",
                      file=sys.stderr, flush=True)
                exit_code = 1
                break
            stopping.wait(0.5)
    finally:
        stop_all(processes)
    print("Demo stopped.", flush=True)
    return exit_code


if __name__ == "__main__":
    sys.exit(main())

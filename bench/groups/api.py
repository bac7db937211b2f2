"""Latency of the run-status endpoint under 32 concurrent clients.

``GET /api/v1/runs/<id>/status/`` (token authentication) for a run in training, served by
gunicorn on loopback as the image serves it: ``docker/entrypoint.sh``'s settings file
``docker/gunicorn.conf.py`` (workers, worker class, threads, preloading, access log; the
``GUNICORN_*`` variables override it here as they do there), from the throw-away
installation of :mod:`bench.platform_env`. 32 client threads each send their requests one
after another, a new connection each; every request's time from connect to the last byte
counts. Errors (non-200 answers, failed connections) are counted and must be zero.
"""

from __future__ import annotations

import http.client
import socket
import subprocess
import sys
import threading
import time

import numpy as np

from bench.platform_env import ROOT, shared_env
from bench.registry import Result, Settings, Target

NAMES = ("api_p95_ms",)
DEVICES = ("cpu",)
CLIENTS = 32
CONFIG = ROOT / "docker" / "gunicorn.conf.py"


def sizes(settings: Settings) -> dict:
    if settings.tiny:
        return {"clients": 4, "requests": 3}
    if settings.quick:
        return {"clients": CLIENTS, "requests": 10}
    return {"clients": CLIENTS, "requests": 40}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(port: int, path: str, token: str) -> tuple[int, float]:
    start = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", path, headers={"Authorization": f"Token {token}",
                                                 "Accept": "application/json"})
        response = connection.getresponse()
        response.read()
        status = response.status
    finally:
        connection.close()
    return status, time.perf_counter() - start


def _wait_until_up(port: int, path: str, token: str, server: subprocess.Popen) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {server.returncode}")
        try:
            if _get(port, path, token)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError("gunicorn did not answer within 120 s")


def load(port: int, path: str, token: str, *, clients: int, requests: int) -> dict:
    """``clients`` threads, ``requests`` each: latencies (s) and error count."""
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(clients)

    def client() -> None:
        barrier.wait()
        for _ in range(requests):
            try:
                status, seconds = _get(port, path, token)
            except OSError as exc:
                with lock:
                    errors.append(type(exc).__name__)
                continue
            with lock:
                latencies.append(seconds)
                if status != 200:
                    errors.append(str(status))

    threads = [threading.Thread(target=client) for _ in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {"latencies": latencies, "errors": errors, "wall_s": time.perf_counter() - start}


def _served_as() -> dict:
    """Workers, worker class and threads as ``docker/gunicorn.conf.py`` sets them here."""
    namespace: dict = {}
    exec(compile(CONFIG.read_text(), str(CONFIG), "exec"), namespace)  # noqa: S102
    return {name: namespace[name] for name in ("workers", "worker_class", "threads")}


def run(settings: Settings) -> list[Result]:
    s = sizes(settings)
    env = shared_env()
    fixture = env.run("api_fixture", seed=settings.seed)
    path, token = f"/api/v1/runs/{fixture['run_id']}/status/", fixture["token"]
    served = _served_as()
    port = _free_port()
    log = open(env.folder / "gunicorn.log", "wb")  # noqa: SIM115 - closed below
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "config.wsgi:application", "-c", str(CONFIG),
         "--bind", f"127.0.0.1:{port}"],
        cwd=ROOT, env=env.environ(), stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_until_up(port, path, token, server)
        load(port, path, token, clients=served["workers"] * 2, requests=5)  # warm up
        out = load(port, path, token, clients=s["clients"], requests=s["requests"])
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()
    ms = np.asarray(out["latencies"]) * 1e3
    p95 = float(np.percentile(ms, 95)) if len(ms) else float("nan")
    count = s["clients"] * s["requests"]
    value = p95 if not out["errors"] else float("nan")
    return [
        Result("api_p95_ms", value, "ms",
               f"{count} GET /api/v1/runs/<id>/status/ from "
               f"{s['clients']} concurrent clients, gunicorn {served['workers']} "
               f"{served['worker_class']} workers x {served['threads']} threads on "
               f"loopback; median {float(np.median(ms)):.3g} ms, "
               f"{len(out['errors'])} errors", Target(high=150),
               details={"requests": count, "clients": s["clients"], **served,
                        "errors": len(out["errors"]), "error_kinds": sorted(set(out["errors"])),
                        "median_ms": float(np.median(ms)) if len(ms) else None,
                        "p99_ms": float(np.percentile(ms, 99)) if len(ms) else None,
                        "throughput_per_s": count / out["wall_s"]}),
    ]

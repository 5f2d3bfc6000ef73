"""Latency of the decision service under concurrent clients, against a real uvicorn process.

Targets (issue 11): ``/predict`` p95 at most 20 ms and ``/explain`` p95 at most 200 ms under 50
concurrent clients. The service is ``python -m trustml_lab.serve`` on the shipped credit model
(one process, one torch thread, a fresh registry: every decision is logged to SQLite), started
on a free port of 127.0.0.1. ``clients`` kept-alive connections (a minimal asyncio HTTP/1.1
client) send applicants of Adult's test part, in one of two ways:

- a **closed loop** (the default): each client sends its next request as soon as the previous
  answer arrives, which keeps ``clients`` requests in flight and saturates the service; the
  latency is the time from sending a request to reading its answer;
- **paced** (``--predict-rate``, ``--explain-rate``: requests/s per client): each client sends
  at its own Poisson times, as independent users do, and the latency counts from the
  scheduled time, so a request delayed behind a slow one is charged the delay (no
  coordinated omission).

Warm-up requests are not counted; the /predict phase runs first, then the /explain phase.

    python -m benchmarks._serving [--clients 50] [--predict 2000] [--explain 200]
                                  [--predict-rate 5 --explain-rate 0.05]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGETS_MS = {"predict_p95": 20.0, "explain_p95": 200.0}


def _records(count: int) -> list[dict]:
    from trustml_lab.data import load_adult
    from trustml_lab.report import load_credit_model

    schema = load_credit_model().schema
    names = [spec.name for spec in schema.fields]
    test = load_adult().dropna(subset=names)
    test = test[test["split"] == "test"].head(count)
    return [{s.name: (float(r[s.name]) if s.kind == "numeric" else str(r[s.name])) for s in schema.fields}
            for r in test.to_dict("records")]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_service(folder: Path, *, timeout_s: float = 120.0) -> tuple[subprocess.Popen, str]:
    """``python -m trustml_lab.serve`` with a fresh registry in ``folder``; waits (bounded) for /health."""
    import httpx

    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TRUSTML_THREADS": os.environ.get("TRUSTML_THREADS", "1")}
    process = subprocess.Popen([sys.executable, "-m", "trustml_lab.serve", "--port", str(port), "--db",
                                str(folder / "registry.db")], env=env, cwd=folder, stdout=subprocess.DEVNULL,
                               stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the service exited with {process.returncode}")
        try:
            if httpx.get(f"{url}/health", timeout=2.0).status_code == 200:
                return process, url
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    process.kill()
    raise TimeoutError(f"the service did not answer within {timeout_s:.0f} s")


def stop_service(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=15)


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> tuple[int, bytes]:
    """Send one HTTP/1.1 request on a kept-alive connection and read its answer (status, body)."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length = next((int(line.split(":", 1)[1]) for line in lines[1:] if line.lower().startswith("content-length:")),
                  None)
    if length is None:
        raise RuntimeError(f"the service answered without a Content-Length: {lines[:4]}")
    return status, await reader.readexactly(length)


async def _closed_loop(url: str, path: str, bodies: list[dict], clients: int) -> list[float]:
    """``clients`` connections, each sending its next body as soon as the previous answer arrived.

    A minimal HTTP/1.1 client on asyncio streams: httpx's pool costs about 10 ms of client CPU per
    request at 50 connections, so with httpx the load generator, not the service, set the pace
    (77 requests/s); this one costs well under a millisecond, so the numbers are the service's.
    """
    host, port = url.removeprefix("http://").split(":")
    requests = [(f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
                 f"Content-Length: {len(data)}\r\n\r\n").encode() + data
                for data in (json.dumps(body).encode() for body in bodies)]
    latencies: list[float] = []
    queue: asyncio.Queue = asyncio.Queue()
    for request in requests:
        queue.put_nowait(request)

    async def worker() -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            while True:
                try:
                    request = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                start = time.perf_counter()
                status, answer = await asyncio.wait_for(_exchange(reader, writer, request), 120.0)
                latencies.append(time.perf_counter() - start)
                if status != 200:
                    raise RuntimeError(f"{path}: {status} {answer[:200]!r}")
        finally:
            writer.close()
            await writer.wait_closed()

    await asyncio.gather(*(worker() for _ in range(clients)))
    return latencies


async def _paced_loop(url: str, path: str, bodies: list[dict], clients: int, rate: float,
                      seed: int = 0) -> list[float]:
    """``clients`` connections, each sending at its own Poisson times (``rate`` requests/s per client).

    Each latency runs from the request's *scheduled* time, not from when it was sent, so a slow
    answer that delays the client's next request is counted against the service (no coordinated
    omission). The total offered load is ``clients * rate`` requests/s.
    """
    import random

    host, port = url.removeprefix("http://").split(":")
    requests = [(f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
                 f"Content-Length: {len(data)}\r\n\r\n").encode() + data
                for data in (json.dumps(body).encode() for body in bodies)]
    latencies: list[float] = []
    shares = [requests[i::clients] for i in range(clients)]
    loop = asyncio.get_running_loop()

    async def worker(share: list[bytes], draw: random.Random) -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            due = loop.time() + draw.expovariate(rate)
            for request in share:
                await asyncio.sleep(max(0.0, due - loop.time()))
                try:
                    status, answer = await asyncio.wait_for(_exchange(reader, writer, request), 120.0)
                except (asyncio.IncompleteReadError, ConnectionError):
                    # the server closed a connection idle for longer than its keep-alive timeout (5 s):
                    # connect again, as an HTTP client does (the new connection's cost is counted)
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, int(port))
                    status, answer = await asyncio.wait_for(_exchange(reader, writer, request), 120.0)
                latencies.append(loop.time() - due)
                if status != 200:
                    raise RuntimeError(f"{path}: {status} {answer[:200]!r}")
                due += draw.expovariate(rate)
        finally:
            writer.close()
            await writer.wait_closed()

    await asyncio.gather(*(worker(share, random.Random(seed * 1000 + i)) for i, share in enumerate(shares)))
    return latencies


def _quantile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q * 100) - 1] if len(values) > 1 else values[0]


def measure(*, url: str | None = None, clients: int = 50, predict_requests: int = 2000,
            explain_requests: int = 200, warmup: int = 100, predict_rate: float | None = None,
            explain_rate: float | None = None) -> dict[str, float]:
    """``/predict`` and ``/explain`` p50, p95 (milliseconds) and throughputs (requests/s).

    ``predict_rate``, ``explain_rate``: requests/s per client, sent at Poisson times (an open
    loop, :func:`_paced_loop`); None: a closed loop (:func:`_closed_loop`), the service saturated.
    ``url``: a running service; default: start one (and stop it at the end).
    """
    # distinct applicants throughout, in the order of the census file: traffic like the training data
    bodies = _records(predict_requests + explain_requests + warmup + max(warmup // 10, 1))
    warm, bodies = bodies[:warmup], bodies[warmup:]
    folder = tempfile.TemporaryDirectory(prefix="trustml-serving-bench-")
    process = None
    try:
        if url is None:
            process, url = start_service(Path(folder.name))
        asyncio.run(_closed_loop(url, "/predict", warm, clients))
        asyncio.run(_closed_loop(url, "/explain", bodies[-max(warmup // 10, 1):], clients))
        out: dict[str, float] = {"clients": clients}
        start_row = 0
        for path, count, rate in (("/predict", predict_requests, predict_rate),
                                  ("/explain", explain_requests, explain_rate)):
            part, start_row = bodies[start_row:start_row + count], start_row + count
            start = time.perf_counter()
            latencies = asyncio.run(_closed_loop(url, path, part, clients) if rate is None
                                    else _paced_loop(url, path, part, clients, rate))
            wall = time.perf_counter() - start
            name = path.strip("/")
            out[f"{name}_offered"] = math.inf if rate is None else clients * rate
            out[f"{name}_p50"] = 1e3 * _quantile(latencies, 0.50)
            out[f"{name}_p95"] = 1e3 * _quantile(latencies, 0.95)
            out[f"{name}_per_s"] = count / wall
        return out
    finally:
        if process is not None:
            stop_service(process)
        folder.cleanup()


def report(numbers: dict[str, float]) -> str:
    """A Markdown table of the numbers against the targets."""
    lines = [f"Service latency, {numbers['clients']:.0f} concurrent clients, one uvicorn process, one torch thread",
             "", "| endpoint | load | p50 (ms) | p95 (ms) | requests/s | target | met |",
             "|---|---|---:|---:|---:|---|---|"]
    for name in ("predict", "explain"):
        target = TARGETS_MS[f"{name}_p95"]
        p95, offered = numbers[f"{name}_p95"], numbers[f"{name}_offered"]
        load = "closed loop" if math.isinf(offered) else f"{offered:g} requests/s offered"
        rate = f"{numbers[f'{name}_per_s']:.0f}" if math.isinf(offered) else "(paced)"
        lines.append(f"| /{name} | {load} | {numbers[f'{name}_p50']:.1f} | {p95:.1f} | {rate} | "
                     f"p95 <= {target:.0f} ms | {'yes' if p95 <= target else 'NO'} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--predict", type=int, default=2000)
    parser.add_argument("--explain", type=int, default=200)
    parser.add_argument("--predict-rate", type=float, help="requests/s per client (default: a closed loop)")
    parser.add_argument("--explain-rate", type=float, help="requests/s per client (default: a closed loop)")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args(argv)
    numbers = measure(clients=args.clients, predict_requests=args.predict, explain_requests=args.explain,
                      predict_rate=args.predict_rate, explain_rate=args.explain_rate)
    print(report(numbers))
    if args.json:
        args.json.write_text(json.dumps(numbers, indent=1))
    return 0 if all(numbers[k] <= v for k, v in TARGETS_MS.items()) else 1


if __name__ == "__main__":
    sys.exit(main())

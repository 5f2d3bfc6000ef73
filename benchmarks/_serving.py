"""Latency of the decision service under concurrent clients, against a real uvicorn process.

Targets (issue 11): ``/predict`` p95 at most 20 ms and ``/explain`` p95 at most 200 ms under 50
concurrent clients. The service is ``python -m trustml_lab.serve`` on the shipped credit model
(one process, one torch thread, a fresh registry: every decision is logged to SQLite), started
on a free port of 127.0.0.1. The clients are a closed loop: ``clients`` asyncio tasks over one
``httpx.AsyncClient``, each sending its next request (applicants of Adult's test part) as soon
as the previous answer arrives; each latency is the time from sending a request to reading its
answer, so it includes the wait in the server's queue. Warm-up requests are not counted.

    python -m benchmarks._serving [--clients 50] [--predict 2000] [--explain 200]
"""

from __future__ import annotations

import argparse
import asyncio
import json
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


async def _closed_loop(url: str, path: str, bodies: list[dict], clients: int) -> list[float]:
    import httpx

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    latencies: list[float] = []
    queue: asyncio.Queue = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    async with httpx.AsyncClient(base_url=url, timeout=60.0, limits=limits) as client:
        async def worker() -> None:
            while True:
                try:
                    body = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                start = time.perf_counter()
                answer = await client.post(path, json=body)
                latencies.append(time.perf_counter() - start)
                if answer.status_code != 200:
                    raise RuntimeError(f"{path}: {answer.status_code} {answer.text[:200]}")
        await asyncio.gather(*(worker() for _ in range(clients)))
    return latencies


def _quantile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q * 100) - 1] if len(values) > 1 else values[0]


def measure(*, url: str | None = None, clients: int = 50, predict_requests: int = 2000,
            explain_requests: int = 200, warmup: int = 100) -> dict[str, float]:
    """``/predict`` p50, p95 and ``/explain`` p50, p95 (milliseconds) and the throughputs (requests/s).

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
        for path, count in (("/predict", predict_requests), ("/explain", explain_requests)):
            part, start_row = bodies[start_row:start_row + count], start_row + count
            start = time.perf_counter()
            latencies = asyncio.run(_closed_loop(url, path, part, clients))
            wall = time.perf_counter() - start
            name = path.strip("/")
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
    lines = [f"Service latency, {numbers['clients']:.0f} concurrent clients (closed loop), one uvicorn process, "
             "one torch thread", "", "| endpoint | p50 (ms) | p95 (ms) | requests/s | target | met |",
             "|---|---:|---:|---:|---|---|"]
    for name in ("predict", "explain"):
        target = TARGETS_MS[f"{name}_p95"]
        p95 = numbers[f"{name}_p95"]
        lines.append(f"| /{name} | {numbers[f'{name}_p50']:.1f} | {p95:.1f} | {numbers[f'{name}_per_s']:.0f} | "
                     f"p95 <= {target:.0f} ms | {'yes' if p95 <= target else 'NO'} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--predict", type=int, default=2000)
    parser.add_argument("--explain", type=int, default=200)
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args(argv)
    numbers = measure(clients=args.clients, predict_requests=args.predict, explain_requests=args.explain)
    print(report(numbers))
    if args.json:
        args.json.write_text(json.dumps(numbers, indent=1))
    return 0 if all(numbers[k] <= v for k, v in TARGETS_MS.items()) else 1


if __name__ == "__main__":
    sys.exit(main())

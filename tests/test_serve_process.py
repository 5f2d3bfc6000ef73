"""The service as a real uvicorn process on a free local port: concurrency and a fuzz of malformed bodies.

The process is started by the fixture, waited for with a bounded wait, and stopped at the end
(terminate, then kill). Every request goes to 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from trustml_lab.serve import Registry
from trustml_lab.serve.app import BackgroundService

ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT_S = 90.0
REQUEST_TIMEOUT_S = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_service(root: Path, port: int) -> subprocess.Popen:
    """``python -m trustml_lab.serve`` on the shipped model, with a fresh registry in ``root``."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TRUSTML_THREADS": "1"}
    command = [sys.executable, "-m", "trustml_lab.serve", "--port", str(port), "--db", str(root / "registry.db")]
    return subprocess.Popen(command, env=env, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_until_up(process: subprocess.Popen, url: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the service exited with {process.returncode}: {process.stdout.read()[-2000:]}")
        try:
            if httpx.get(f"{url}/health", timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"the service did not answer {url}/health within {START_TIMEOUT_S:.0f} s")


def stop(process: subprocess.Popen) -> str:
    process.terminate()
    try:
        out, _ = process.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        out, _ = process.communicate(timeout=15)
    return out or ""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``python -m trustml_lab.serve`` on the shipped model (BackgroundService: a free port, a bounded wait)."""
    root = tmp_path_factory.mktemp("service")
    service = BackgroundService(["--db", root / "registry.db"], timeout_s=START_TIMEOUT_S)
    try:
        registry = Registry(root / "registry.db")
        yield service.url, service.process, registry
        registry.close()
    finally:
        assert service.stop() is not None and service.process.poll() is not None
    output = service.log()
    assert "trustml_lab.serve: version credit_model_v1 on" in output and "Traceback" not in output, output[-3000:]


@pytest.fixture(scope="module")
def bodies():
    from tests._serve_bundles import test_records

    return test_records(0, 200)


async def _concurrent(url: str, bodies: list[dict], limit: int) -> list[httpx.Response]:
    semaphore = asyncio.Semaphore(limit)
    limits = httpx.Limits(max_connections=limit, max_keepalive_connections=limit)
    async with httpx.AsyncClient(base_url=url, timeout=REQUEST_TIMEOUT_S, limits=limits) as client:
        async def one(body):
            async with semaphore:
                return await client.post("/predict", json=body)
        return await asyncio.gather(*(one(b) for b in bodies))


def test_200_concurrent_requests_are_all_answered_and_logged(server, bodies):
    url, process, registry = server
    before = registry.count_decisions()
    answers = asyncio.run(asyncio.wait_for(_concurrent(url, bodies, limit=50), timeout=120))
    assert [a.status_code for a in answers] == [200] * 200
    ids = {a.json()["request_id"] for a in answers}
    assert len(ids) == 200
    assert registry.count_decisions() == before + 200
    logged = {d.request_id: d for d in registry.decisions(after=0)}
    assert ids <= set(logged)
    for answer, body in zip(answers, bodies):
        record = logged[answer.json()["request_id"]]
        assert record.inputs == body and record.score == pytest.approx(answer.json()["score"])
    assert process.poll() is None


def malformed(valid: dict, seed: int = 0) -> list[tuple[str, bytes, str]]:
    """(what, body, content type) of bodies the service must refuse with a 4xx."""
    text = json.dumps(valid)
    cases = [
        ("empty", b"", "application/json"),
        ("truncated", text[: len(text) // 2].encode(), "application/json"),
        ("null", b"null", "application/json"),
        ("a list", b"[1, 2, 3]", "application/json"),
        ("a string", b'"applicant"', "application/json"),
        ("a number", b"42", "application/json"),
        ("age as a list", json.dumps({**valid, "age": [30]}).encode(), "application/json"),
        ("age as an object", json.dumps({**valid, "age": {"years": 30}}).encode(), "application/json"),
        ("sex as null", json.dumps({**valid, "sex": None}).encode(), "application/json"),
        ("a huge number", text.replace(f'"age": {json.dumps(valid["age"])}', '"age": 1e308').encode(),
         "application/json"),
        ("a huge integer", text.replace(f'"age": {json.dumps(valid["age"])}', '"age": ' + "9" * 5000).encode(),
         "application/json"),
        ("NaN", text.replace(f'"age": {json.dumps(valid["age"])}', '"age": NaN').encode(), "application/json"),
        ("Infinity", text.replace(f'"age": {json.dumps(valid["age"])}', '"age": -Infinity').encode(),
         "application/json"),
        ("unicode category", json.dumps({**valid, "workclass": "\u00f6ffentlich \U0001f3db"}).encode(),
         "application/json"),
        ("a lone surrogate", text.replace(valid["workclass"], "\\ud800").encode(), "application/json"),
        ("invalid UTF-8", b'{"workclass": "\xff\xfe"}', "application/json"),
        ("deep nesting", b"[" * 100_000 + b"]" * 100_000, "application/json"),
        ("deep nesting in a field", json.dumps({**valid, "age": "X"}).replace('"X"', "[" * 5000 + "]" * 5000).encode(),
         "application/json"),
        ("a long string", json.dumps({**valid, "occupation": "x" * 60_000}).encode(), "application/json"),
        ("over 64 KiB", json.dumps({**valid, "occupation": "x" * 70_000}).encode(), "application/json"),
        ("plain text", text.encode(), "text/plain"),
        ("form encoded", b"age=30&sex=male", "application/x-www-form-urlencoded"),
        ("no content type", text.encode(), ""),
        ("duplicate keys", text[:-1].encode() + b', "age": "old"}', "application/json"),
        ("an extra field", json.dumps({**valid, "admin": True}).encode(), "application/json"),
    ]
    rng = random.Random(seed)
    raw = text.encode()
    for i in range(60):  # random damage: cut, flip a byte, drop a byte, insert junk
        cut = rng.randrange(1, len(raw))
        kind = i % 4
        if kind == 0:
            body = raw[:cut]
        elif kind == 1:
            body = raw[:cut] + bytes([rng.randrange(256)]) + raw[cut + 1:]
        elif kind == 2:
            body = raw[:cut] + raw[cut + 1:]
        else:
            body = raw[:cut] + rng.choice([b"}", b"{", b'"', b",", b"\\", b"\x00", b"]"]) + raw[cut:]
        cases.append((f"damaged {i}", body, "application/json"))
    return cases


def test_a_fuzz_of_malformed_bodies_gets_4xx_never_5xx(server, bodies):
    url, process, registry = server
    before = registry.count_decisions()
    valid = bodies[0]
    statuses = {}
    with httpx.Client(base_url=url, timeout=REQUEST_TIMEOUT_S) as client:
        for what, body, content_type in malformed(valid):
            headers = {"content-type": content_type} if content_type else {}
            for path in ("/predict", "/explain"):
                answer = client.post(path, content=body, headers=headers)
                statuses[(what, path)] = answer.status_code
                assert answer.status_code < 500, (what, path, answer.status_code, answer.text[:300])
                if answer.status_code != 200:
                    assert 400 <= answer.status_code < 500 and "message" in answer.json(), (what, answer.text[:300])
        assert client.get("/health").status_code == 200
        assert client.post("/predict", json=valid).status_code == 200
    named = [k for k in statuses if not k[0].startswith("damaged")]
    refused = [k for k in named if statuses[k] >= 400]
    assert len(refused) == len(named), [k for k in named if statuses[k] < 400]
    accepted = sum(1 for k, s in statuses.items() if s == 200 and k[1] == "/predict")  # a flip inside a number
    assert registry.count_decisions() == before + accepted + 1
    assert process.poll() is None


def test_the_latency_benchmark_runs_at_a_tiny_size(server):
    """benchmarks/_serving.py against this process: 4 clients, a few requests (numbers, no target)."""
    from benchmarks._serving import TARGETS_MS, measure, report

    url, process, _ = server
    numbers = measure(url=url, clients=4, predict_requests=20, explain_requests=4, warmup=8)
    assert all(numbers[k] > 0 for k in ("predict_p50", "predict_p95", "explain_p95", "predict_per_s"))
    assert numbers["predict_p50"] <= numbers["predict_p95"] and set(TARGETS_MS) <= set(numbers)
    assert "| /predict | closed loop |" in report(numbers) and process.poll() is None
    paced = measure(url=url, clients=4, predict_requests=20, explain_requests=4, warmup=8, predict_rate=50.0,
                    explain_rate=5.0)
    assert paced["predict_offered"] == 200.0 and paced["predict_p50"] <= paced["predict_p95"]
    assert "| /explain | 20 requests/s offered |" in report(paced) and process.poll() is None

"""Spreading a service's requests over every address of its name (replicas behind Docker's
DNS): least in flight with round robin among equals, an address that fails rests and the
retry goes elsewhere, the name is resolved again. Real HTTP servers on 127.0.0.x."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from services.common.http import Endpoints, ServiceClient
from tests.helpers.procs import free_port


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_equal_load_goes_round_robin_and_busy_addresses_are_avoided() -> None:
    clock = Clock()
    endpoints = Endpoints("http://embedding:8101", resolver=lambda h, p: ["10.0.0.1", "10.0.0.2",
                                                                           "10.0.0.3"],
                          clock=clock)
    seen = []
    for _ in range(6):
        with endpoints.pick() as endpoint:
            seen.append(endpoint.address)
    assert sorted(seen) == ["10.0.0.1", "10.0.0.1", "10.0.0.2", "10.0.0.2", "10.0.0.3",
                            "10.0.0.3"]
    assert {e.url for e in endpoints.snapshot()} == {
        "http://10.0.0.1:8101", "http://10.0.0.2:8101", "http://10.0.0.3:8101"}
    with endpoints.pick() as a, endpoints.pick() as b, endpoints.pick() as c:
        assert len({a.address, b.address, c.address}) == 3  # the one with nothing in flight
    assert all(e.in_flight == 0 for e in endpoints.snapshot())
    assert endpoints.host_header == "embedding:8101"


def test_failed_address_rests_and_names_are_resolved_again() -> None:
    import httpx

    clock = Clock()
    answer = ["10.0.0.1", "10.0.0.2"]
    endpoints = Endpoints("http://embedding:8101", resolver=lambda h, p: list(answer),
                          clock=clock, refresh_s=20, cooldown_s=5)
    with pytest.raises(httpx.ConnectError), endpoints.pick() as endpoint:
        failed = endpoint.address
        raise httpx.ConnectError("refused")
    for _ in range(4):
        with endpoints.pick() as endpoint:
            assert endpoint.address != failed
    clock.now += 5
    assert {_pick(endpoints) for _ in range(4)} == {"10.0.0.1", "10.0.0.2"}
    answer[:] = ["10.0.0.2", "10.0.0.3"]  # a replica went, another came
    clock.now += 9
    assert "10.0.0.3" not in {_pick(endpoints) for _ in range(4)}  # not resolved yet
    clock.now += 6  # 20 s after the first resolution
    assert {_pick(endpoints) for _ in range(4)} == {"10.0.0.2", "10.0.0.3"}


def test_resolver_failure_keeps_the_known_addresses_and_literals_are_not_resolved() -> None:
    clock = Clock()
    state = {"fail": False}

    def resolver(host: str, port: int) -> list[str]:
        if state["fail"]:
            raise OSError("temporary failure in name resolution")
        return ["10.0.0.1", "10.0.0.2"]

    endpoints = Endpoints("http://embedding:8101", resolver=resolver, clock=clock)
    _pick(endpoints)
    state["fail"] = True
    clock.now += 60
    assert {_pick(endpoints) for _ in range(4)} == {"10.0.0.1", "10.0.0.2"}

    def never(host: str, port: int) -> list[str]:
        raise AssertionError("an address needs no resolving")

    for url in ("http://127.0.0.1:8101", "https://embedding.example:8443"):
        literal = Endpoints(url, resolver=never, clock=clock)
        with literal.pick() as endpoint:
            assert endpoint.url == url


def _pick(endpoints: Endpoints) -> str:
    with endpoints.pick() as endpoint:
        return endpoint.address


class _Replica:
    """A tiny HTTP server on one loopback address that says who it is."""

    def __init__(self, host: str, port: int, gate: threading.Event) -> None:
        self.host = host
        self.hits = 0
        self.hosts: set[str] = set()
        replica = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                replica.hits += 1
                replica.hosts.add(self.headers.get("Host", ""))
                gate.wait(timeout=30)  # held open while the test keeps the gate closed
                body = json.dumps({"replica": replica.host}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def gate() -> Iterator[threading.Event]:
    opened = threading.Event()
    opened.set()
    yield opened
    opened.set()


@pytest.fixture
def replicas(gate: threading.Event) -> Iterator[list[_Replica]]:
    port = free_port()
    running = [_Replica(f"127.0.0.{i}", port, gate) for i in (2, 3, 4)]
    try:
        yield running
    finally:
        for replica in running:
            replica.stop()


def test_client_spreads_over_every_replica_and_survives_one_going_away(
        replicas: list[_Replica], gate: threading.Event) -> None:
    """One request at a time goes round the replicas; requests in flight together go to
    different replicas (the fewest in flight), however slowly each one answers."""
    port = replicas[0].server.server_address[1]
    addresses = [r.host for r in replicas]
    client = ServiceClient("embedding", f"http://embedding.test:{port}", "token",
                           resolver=lambda host, p: list(addresses), cooldown_s=60,
                           backoff_max=0.1)
    try:
        answers = [client.request("GET", "/who").json()["replica"] for _ in range(30)]
        assert [answers.count(a) for a in addresses] == [10, 10, 10]
        assert {r.host: r.hits for r in replicas} == {a: answers.count(a) for a in addresses}
        assert all(r.hosts == {f"embedding.test:{port}"} for r in replicas)
        gate.clear()  # every replica now holds its requests until the gate opens
        with ThreadPoolExecutor(3) as pool:
            held = [pool.submit(lambda: client.request("GET", "/who").json()["replica"])
                    for _ in range(3)]
            deadline = time.monotonic() + 30
            while sum(r.hits for r in replicas) < 33 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert [r.hits for r in replicas] == [11, 11, 11]
            gate.set()
            assert sorted(f.result() for f in held) == addresses
        replicas[1].stop()  # its address still resolves, but nothing answers there
        answers = [client.request("GET", "/who").json()["replica"] for _ in range(12)]
        assert set(answers) == {"127.0.0.2", "127.0.0.4"}
    finally:
        client.close()


def test_async_client_spreads_too(replicas: list[_Replica]) -> None:
    import asyncio

    port = replicas[0].server.server_address[1]
    client = ServiceClient("embedding", f"http://embedding.test:{port}", "token",
                           resolver=lambda host, p: [r.host for r in replicas])

    async def run() -> list[str]:
        try:
            responses = await asyncio.gather(*(client.arequest("GET", "/who")
                                               for _ in range(12)))
            return [r.json()["replica"] for r in responses]
        finally:
            await client.aclose()

    assert set(asyncio.run(run())) == {r.host for r in replicas}

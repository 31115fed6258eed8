"""An open-loop HTTP/1.1 client: sends the prepared deliveries at a fixed rate, whatever the
server does, and prints one JSON line of results (wrk cannot hold a rate; wrk2 is not in Debian).

Each request has an intended start time `t0 + i / rate`. Latency is measured from that intended
time, so a server (or a client) that falls behind is charged for the wait (no coordinated
omission); `service` latency, from the moment the bytes were written, is reported too.

    python -m benchmarks.paced_client REQUESTS_FILE --port P --rate 1000

REQUESTS_FILE holds one delivery a line: `<Stripe-Signature>\\t<body>` (what run.py writes).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import orjson
import uvloop

PATH = "/webhooks/stripe"


def load_requests(path: Path, port: int) -> list[bytes]:
    requests = []
    for line in path.read_bytes().splitlines():
        route = PATH.encode()
        if line.startswith(b"/"):  # `<path>\t<Stripe-Signature>\t<body>`
            route, line = line.split(b"\t", 1)
        header, body = line.split(b"\t", 1)
        requests.append(
            b"POST %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: application/json\r\n"
            b"Stripe-Signature: %s\r\nContent-Length: %d\r\n\r\n%s"
            % (route, port, header, len(body), body)
        )
    return requests


def percentile(sorted_values: list[float], fraction: float) -> float | None:
    if not sorted_values:
        return None
    index = min(len(sorted_values) - 1, max(0, round(fraction * len(sorted_values)) - 1))
    return sorted_values[index]


Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]
IDLE_LIMIT = 3.0  # s; uvicorn closes a keep-alive connection idle for 5 s


class Connections:
    """Keep-alive connections, opened on demand up to `limit`, reused last-in first-out; one
    idle for longer than IDLE_LIMIT is closed here rather than raced against the server."""

    def __init__(self, port: int, limit: int) -> None:
        self.port = port
        self.limit = limit
        self.opened = 0
        self.peak = 0
        self.idle: list[tuple[Connection, float]] = []
        self.available = asyncio.Condition()

    async def acquire(self) -> tuple[Connection, bool]:
        """A connection, and whether it was used before (the server may have closed it)."""
        async with self.available:
            while True:
                while not self.idle and self.opened >= self.limit:
                    await self.available.wait()
                if not self.idle:
                    break
                connection, last_used = self.idle.pop()
                if time.monotonic() - last_used < IDLE_LIMIT:
                    return connection, True
                connection[1].close()
                self.opened -= 1
            self.opened += 1
            self.peak = max(self.peak, self.opened)
        try:
            return await asyncio.open_connection("127.0.0.1", self.port), False
        except OSError:
            async with self.available:
                self.opened -= 1
                self.available.notify()
            raise

    async def release(self, connection: Connection | None) -> None:
        async with self.available:
            if connection is None:
                self.opened -= 1
            else:
                self.idle.append((connection, time.monotonic()))
            self.available.notify()

    def close(self) -> None:
        for (_, writer), _ in self.idle:
            writer.close()


async def exchange(connection: Connection, request: bytes) -> tuple[int, bytes]:
    reader, writer = connection
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    body = await reader.readexactly(length) if length else b""
    return status, body


async def run(requests: list[bytes], port: int, rate: float, limit: int, timeout: float) -> dict:
    loop = asyncio.get_running_loop()
    clock = time.perf_counter  # uvloop's loop.time() has millisecond resolution
    connections = Connections(port, limit)
    latencies: list[float] = []
    service: list[float] = []
    statuses: dict[str, int] = {}
    duplicates = 0
    retried = 0
    lag = 0.0

    async def one(request: bytes, intended: float) -> None:
        nonlocal duplicates, retried
        for attempt in (1, 2):
            try:
                connection, reused = await connections.acquire()
            except OSError as exc:
                statuses[type(exc).__name__] = statuses.get(type(exc).__name__, 0) + 1
                return
            sent = clock()
            try:
                status, body = await exchange(connection, request)
                break
            except (OSError, asyncio.IncompleteReadError, ValueError, IndexError) as exc:
                connection[1].close()
                await connections.release(None)
                if reused and attempt == 1:  # an idle keep-alive connection the server closed
                    retried += 1
                    continue
                statuses[type(exc).__name__] = statuses.get(type(exc).__name__, 0) + 1
                return
        done = clock()
        await connections.release(connection)
        statuses[str(status)] = statuses.get(str(status), 0) + 1
        if status == 200:
            latencies.append(done - intended)
            service.append(done - sent)
            duplicates += b'"duplicate":true' in body

    tasks = []
    start = clock() + 0.05
    for index, request in enumerate(requests):
        intended = start + index / rate
        delay = intended - clock()
        if delay > 0:
            await asyncio.sleep(delay)
        else:
            lag = max(lag, -delay)
        tasks.append(loop.create_task(one(request, intended)))
    sent_by = clock()
    _, pending = await asyncio.wait(tasks, timeout=timeout) if tasks else (set(), set())
    for task in pending:
        task.cancel()
    finished = clock()
    connections.close()
    latencies.sort()
    service.sort()
    return {
        "offered_rate": rate,
        "requests": len(requests),
        "send_seconds": sent_by - start,
        "seconds": finished - start,
        "accepted": len(latencies),
        "accepted_per_s": len(latencies) / (finished - start),
        "duplicates": duplicates,
        "statuses": statuses,
        "timed_out": len(pending),
        "retried_on_closed_connection": retried,
        "max_client_lag_ms": lag * 1000,
        "peak_connections": connections.peak,
        "p50_ms": _ms(percentile(latencies, 0.50)),
        "p90_ms": _ms(percentile(latencies, 0.90)),
        "p99_ms": _ms(percentile(latencies, 0.99)),
        "max_ms": _ms(latencies[-1] if latencies else None),
        "service_p50_ms": _ms(percentile(service, 0.50)),
        "service_p99_ms": _ms(percentile(service, 0.99)),
    }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("requests", type=Path)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--rate", type=float, required=True, help="requests per second")
    parser.add_argument("--connections", type=int, default=64, help="at most this many")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds after the last send")
    args = parser.parse_args(argv)
    requests = load_requests(args.requests, args.port)
    began = time.monotonic()
    result = uvloop.run(run(requests, args.port, args.rate, args.connections, args.timeout))
    result["wall_seconds"] = time.monotonic() - began
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

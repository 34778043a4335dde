"""Load test of ``python -m hybridrec.serve``: concurrent clients on loopback, a share of them
malformed, for a bounded time.

    python -m benchmarks.serve_load --run runs/hybrid-ml-100k-random --clients 32 --seconds 60

It copies the run folder (the test's updates must not touch it), starts the server on
127.0.0.1, runs a few seconds of unrecorded warm-up, then ``--clients`` keep-alive connections,
each sending its next request as soon as the last is answered, until ``--seconds`` pass or
``--max-requests`` are sent. Reported: throughput, p50 / p99 latency per endpoint (valid and
malformed requests apart), the status-code histogram and the server's resident memory before
and after (sampled every second). Written to ``benchmarks/results/serving/http/load.json``
(``--out``) and printed as a table.

The requests, drawn by a seeded generator per client:

* valid: ``GET /recommend`` (a random known user, k=10), ``GET /recommend?explain=true``,
  ``POST /recommend`` with a 10-item history or a sentence, ``GET /similar``, ``GET /explain``,
  ``POST /interactions`` (a known user and item: a live update, journaled), ``GET /health``;
* malformed (``--malformed``, default 10 %): unknown user or item, k out of range, a bool that
  is not one, malformed JSON, wrong JSON types, unknown fields, a body over the size limit, a
  body that is not JSON, a KG triple pointing to no new item, a path that does not exist.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter, defaultdict
from pathlib import Path
from urllib.parse import urlencode

RESULTS = Path("benchmarks/results/serving/http")
HOST = "127.0.0.1"  # loopback only
MAX_CLIENTS, MAX_SECONDS = 256, 600
SENTENCES = ("a funny comedy that makes me laugh", "a scary horror movie with monsters",
             "science fiction in outer space", "a romantic love story",
             "a war film about soldiers in battle", "an animated film for children")
# Shares of the valid requests: mostly top-k lists, as an application calls them. An
# explained list costs ten explanations (about 60 ms of CPU on ml-100k), so it is rarer.
VALID_MIX = {"recommend": 0.70, "recommend_explain": 0.01, "history": 0.08, "text": 0.01,
             "similar": 0.10, "explain": 0.04, "interactions": 0.04, "health": 0.02}


# ---------------------------------------------------------------------------- the server
def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def start_server(run: Path, port: int, workers: int = 1, timeout: float = 600.0,
                 log=subprocess.DEVNULL) -> subprocess.Popen:
    """``python -m hybridrec.serve run`` on 127.0.0.1:``port``, returned once ``/health``
    answers."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")])}
    server = subprocess.Popen([sys.executable, "-m", "hybridrec.serve", str(run), "--host", HOST,
                               "--port", str(port), "--workers", str(workers)],
                              env=env, stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True)  # its workers die with it: stop_server
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited with code {server.returncode} while starting")
        try:
            with urllib.request.urlopen(f"http://{HOST}:{port}/health", timeout=2) as r:
                if r.status == 200:
                    return server
        except OSError:
            time.sleep(0.5)
    stop_server(server)
    raise RuntimeError(f"the server did not answer /health within {timeout:.0f} s")


def stop_server(server: subprocess.Popen) -> None:
    """Stop the server and its worker processes (its process group)."""
    try:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()
    except ProcessLookupError:
        pass


def rss_bytes(pid: int) -> int:
    """Resident memory of a process and its children (the ``--workers`` processes)."""
    total = 0
    try:
        with open(f"/proc/{pid}/status") as f:
            total = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS"))
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            children = [int(c) for c in f.read().split()]
    except (OSError, StopIteration):
        return total
    return total + sum(rss_bytes(c) for c in children)


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of a process and its children so far."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            children = [int(c) for c in f.read().split()]
    except OSError:
        return 0.0
    own = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return own + sum(cpu_seconds(c) for c in children)


def machine_busy_seconds() -> float:
    """CPU time all processes of the machine spent so far (``/proc/stat``)."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------------------- the requests
class Requests:
    """Draws requests: ``(endpoint label, method, path, headers, body)``."""

    def __init__(self, users: list[str], items: list[str], columns: list[str], relation: str,
                 malformed: float, mix: dict[str, float], rng: random.Random) -> None:
        self.users, self.items, self.malformed, self.rng = users, items, malformed, rng
        self.columns, self.relation = columns, relation  # a complete item row; a known relation
        self.kinds, self.weights = zip(*mix.items())

    def next(self) -> tuple[str, str, str, dict[str, str], bytes]:
        if self.rng.random() < self.malformed:
            return self._bad()
        kind = self.rng.choices(self.kinds, self.weights)[0]
        user, item = self.rng.choice(self.users), self.rng.choice(self.items)
        if kind in ("recommend", "recommend_explain"):
            query = {"user": user, "k": 10, **({"explain": "true"} if kind != "recommend"
                                                else {})}
            label = "GET /recommend" + ("?explain" if kind != "recommend" else "")
            return label, "GET", "/recommend?" + urlencode(query), {}, b""
        if kind == "history":
            return _post("POST /recommend history", "/recommend",
                         {"history": self.rng.sample(self.items, 10), "k": 10})
        if kind == "text":
            return _post("POST /recommend text", "/recommend",
                         {"text": self.rng.choice(SENTENCES), "k": 10})
        if kind == "similar":
            return "GET /similar", "GET", f"/similar?{urlencode({'item': item, 'k': 10})}", {}, b""
        if kind == "explain":
            return "GET /explain", "GET", f"/explain?{urlencode({'user': user, 'item': item})}", \
                {}, b""
        if kind == "interactions":
            return _post("POST /interactions", "/interactions",
                         {"interactions": [{"user_id": user, "item_id": item}]})
        return "GET /health", "GET", "/health", {}, b""

    def _bad(self) -> tuple[str, str, str, dict[str, str], bytes]:
        user, item = self.rng.choice(self.users), self.rng.choice(self.items)
        bad = self.rng.randrange(12)
        if bad == 0:
            return "bad GET /recommend", "GET", "/recommend?user=nobody-here&k=10", {}, b""
        if bad == 1:
            k = self.rng.choice(("0", "-3", "1000", "ten"))
            return "bad GET /recommend", "GET", f"/recommend?user={user}&k={k}", {}, b""
        if bad == 2:
            return "bad GET /recommend", "GET", f"/recommend?user={user}&explain=maybe", {}, b""
        if bad == 3:
            return "bad GET /similar", "GET", "/similar?item=no-such-item", {}, b""
        if bad == 4:
            return "bad POST /recommend", "POST", "/recommend", _JSON, b'{"history": ["1", '
        if bad == 5:
            return _post("bad POST /recommend", "/recommend", {"history": [1, 2], "k": "10"})
        if bad == 6:
            return _post("bad POST /recommend", "/recommend", {"history": [item], "colour": 1})
        if bad == 7:
            big = json.dumps({"text": "x" * (1 << 20)}).encode()  # over the 1 MiB limit
            return "bad POST /recommend", "POST", "/recommend", _JSON, big
        if bad == 8:
            return "bad POST /interactions", "POST", "/interactions", \
                {"Content-Type": "text/plain"}, f"{user},{item}".encode()
        if bad == 9:
            return _post("bad POST /interactions", "/interactions",
                         {"interactions": [{"user_id": user, "item_id": "no-such-item"}]})
        if bad == 10:  # a complete row, but its triple is about no new item
            row = {c: "x" for c in self.columns} | {"item_id": f"new-{self.rng.randrange(1 << 30)}"}
            return _post("bad POST /items", "/items", {
                "items": [row], "triples": [["http://nowhere/a", self.relation, "http://b"]]})
        return "bad GET /nowhere", "GET", "/nowhere", {}, b""


_JSON = {"Content-Type": "application/json"}


def _post(label: str, path: str, body: dict) -> tuple[str, str, str, dict[str, str], bytes]:
    return label, "POST", path, _JSON, json.dumps(body).encode()


# ---------------------------------------------------------------------------- the clients
async def _exchange(reader, writer, method: str, path: str, headers: dict[str, str],
                    body: bytes) -> tuple[int, bool]:
    """One HTTP/1.1 request on a keep-alive connection: the status, and whether the server
    keeps the connection open."""
    head = f"{method} {path} HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: {len(body)}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    writer.write(head.encode() + body)
    await writer.drain()
    lines = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    fields = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":")
                                                           for line in lines[1:] if line)}
    await reader.readexactly(int(fields.get("content-length", "0")))
    return status, fields.get("connection", "").lower() != "close"


async def _client(port: int, requests: Requests, until: float, budget: list[int],
                  record: list | None) -> None:
    reader = writer = None
    while time.monotonic() < until and budget[0] > 0:
        budget[0] -= 1
        label, method, path, headers, body = requests.next()
        start = time.perf_counter()
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection(HOST, port)
            status, keep = await asyncio.wait_for(
                _exchange(reader, writer, method, path, headers, body), timeout=30)
        except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError) as err:
            status, keep = f"error:{type(err).__name__}", False
        if record is not None:
            record.append((label, status, time.perf_counter() - start))
        if not keep and writer is not None:
            writer.close()
            reader = writer = None
    if writer is not None:
        writer.close()


async def _load(port: int, clients: int, seconds: float, max_requests: int,
                draw: dict, seed: int, record: list | None) -> None:
    until, budget = time.monotonic() + seconds, [max_requests]
    await asyncio.gather(*(
        _client(port, Requests(**draw, rng=random.Random(seed * 1000 + c)), until, budget,
                record) for c in range(clients)))


# ---------------------------------------------------------------------------- the report
def summarise(record: list, seconds: float) -> dict:
    by_label: dict[str, list[float]] = defaultdict(list)
    statuses: dict[str, Counter] = defaultdict(Counter)
    for label, status, elapsed in record:
        by_label[label].append(elapsed * 1000)
        statuses[label][str(status)] += 1
    endpoints = {}
    for label, ms in sorted(by_label.items()):
        ms.sort()
        endpoints[label] = {"requests": len(ms), "p50_ms": round(statistics.median(ms), 2),
                            "p99_ms": round(ms[min(len(ms) - 1, int(0.99 * len(ms)))], 2),
                            "max_ms": round(ms[-1], 2), "statuses": dict(statuses[label])}
    total = Counter()
    for counts in statuses.values():
        total.update(counts)
    return {"requests": len(record), "seconds": round(seconds, 2),
            "throughput_rps": round(len(record) / seconds, 1),
            "statuses": dict(sorted(total.items())),
            "responses_5xx": sum(n for s, n in total.items() if s.startswith("5")),
            "errors": sum(n for s, n in total.items() if s.startswith("error")),
            "endpoints": endpoints}


def table(result: dict) -> str:
    lines = [f"{result['requests']} requests in {result['seconds']} s: "
             f"{result['throughput_rps']} req/s; statuses {result['statuses']}; "
             f"server RSS {result['rss_mb']['before']} -> {result['rss_mb']['after']} MB "
             f"(max {result['rss_mb']['max']}, {result['rss_mb']['change_pct']:+.1f} %); "
             f"CPU s: server {result['cpu_s']['server']}, clients {result['cpu_s']['clients']}, "
             f"other processes {result['cpu_s']['others']}",
             "", "| endpoint | requests | p50 ms | p99 ms | max ms | statuses |",
             "|---|---|---|---|---|---|"]
    for label, e in result["endpoints"].items():
        lines.append(f"| {label} | {e['requests']} | {e['p50_ms']} | {e['p99_ms']} | "
                     f"{e['max_ms']} | {e['statuses']} |")
    return "\n".join(lines)


def run_load(run: Path, clients: int, seconds: float, malformed: float, max_requests: int,
             warmup: float, workers: int, seed: int, mix: dict[str, float] = VALID_MIX) -> dict:
    load = os.getloadavg()[0]
    ids = json.loads((run / "ids.json").read_text())
    data = json.loads((run / "dataset.json").read_text())
    draw = {"users": ids["users"], "items": ids["items"], "malformed": malformed, "mix": mix,
            "columns": data["item_text_columns"] + data["item_categorical_columns"],
            "relation": ids["relations"][0]}
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / run.name
        shutil.copytree(run, copy, ignore=shutil.ignore_patterns("journal.jsonl"))
        port = free_port()
        t = time.perf_counter()
        server = start_server(copy, port, workers)
        startup = time.perf_counter() - t
        try:
            asyncio.run(_load(port, clients, warmup, max_requests, draw, seed + 1, None))
            before = rss_bytes(server.pid)
            record: list = []
            samples = [before]

            async def sample() -> None:
                while True:
                    await asyncio.sleep(1)
                    samples.append(rss_bytes(server.pid))

            async def measured() -> float:
                sampler = asyncio.ensure_future(sample())
                start = time.perf_counter()
                await _load(port, clients, seconds, max_requests, draw, seed, record)
                elapsed = time.perf_counter() - start
                sampler.cancel()
                return elapsed

            cpu = (cpu_seconds(server.pid), time.process_time(), machine_busy_seconds())
            elapsed = asyncio.run(measured())
            cpu = (cpu_seconds(server.pid) - cpu[0], time.process_time() - cpu[1],
                   machine_busy_seconds() - cpu[2])
            after = rss_bytes(server.pid)
            with urllib.request.urlopen(f"http://{HOST}:{port}/health", timeout=10) as r:
                health = json.loads(r.read())
        finally:
            stop_server(server)
    result = {"run": str(run), "clients": clients, "malformed_share": malformed,
              "workers": workers, "seed": seed, "valid_mix": mix,
              "server_startup_s": round(startup, 1), "cpus": os.cpu_count(),
              # Other work on the machine shares its cores: the 1-minute load average
              # before the server started and after the run (ours included).
              "load_average": [round(load, 2), round(os.getloadavg()[0], 2)],
              **summarise(record, elapsed),
              "rss_mb": {"before": round(before / 2**20, 1), "after": round(after / 2**20, 1),
                         "max": round(max(samples) / 2**20, 1),
                         "change_pct": round(100 * (after - before) / before, 2)},
              # CPU seconds during the measured run: the server, the clients, and everything
              # else on the machine (other jobs share its cores).
              "cpu_s": {"server": round(cpu[0], 1), "clients": round(cpu[1], 1),
                        "others": round(max(0.0, cpu[2] - cpu[0] - cpu[1]), 1)},
              "journal_updates": health["journal_updates"]}
    return result


def _mix(text: str) -> dict[str, float]:
    """``"recommend=0.9,similar=0.1"`` -> shares by kind (kinds of :data:`VALID_MIX`)."""
    mix = {}
    for part in text.split(","):
        kind, _, share = part.partition("=")
        if kind.strip() not in VALID_MIX:
            raise argparse.ArgumentTypeError(f"unknown kind {kind.strip()!r}; kinds: "
                                             f"{', '.join(VALID_MIX)}")
        try:
            mix[kind.strip()] = float(share)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{part!r}: expected KIND=SHARE") from None
    if not mix or any(v < 0 for v in mix.values()) or sum(mix.values()) <= 0:
        raise argparse.ArgumentTypeError("shares must be non-negative, not all zero")
    return mix


def _mix_text(mix: dict[str, float]) -> str:
    return ",".join(f"{k}={v:g}" for k, v in mix.items())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="a trained run folder")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--malformed", type=float, default=0.10, help="share of bad requests")
    parser.add_argument("--max-requests", type=int, default=1_000_000)
    parser.add_argument("--warmup", type=float, default=5.0, help="unrecorded seconds first")
    parser.add_argument("--workers", type=int, default=1, help="server processes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--mix", type=_mix, default=VALID_MIX, metavar="KIND=SHARE,...",
                        help=f"shares of the valid requests (default: {_mix_text(VALID_MIX)})")
    parser.add_argument("--out", type=Path, default=RESULTS / "load.json")
    args = parser.parse_args(argv)
    if not 1 <= args.clients <= MAX_CLIENTS or not 0 < args.seconds <= MAX_SECONDS:
        parser.error(f"--clients must be 1..{MAX_CLIENTS} and --seconds 0..{MAX_SECONDS}")
    if not 0 <= args.malformed <= 1:
        parser.error("--malformed is a share between 0 and 1")
    result = run_load(args.run, args.clients, args.seconds, args.malformed, args.max_requests,
                      args.warmup, args.workers, args.seed, args.mix)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(table(result))
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

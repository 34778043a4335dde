"""Request counts and latency histograms per endpoint, in the Prometheus text format.

Written by hand (a counter and a histogram are a few lines; no client library to install)::

    hybridrec_http_requests_total{method="GET",endpoint="/similar",status="200"} 1042
    hybridrec_http_request_duration_seconds_bucket{method="GET",endpoint="/similar",le="0.005"} 1013
    hybridrec_http_request_duration_seconds_sum{method="GET",endpoint="/similar"} 2.871
    hybridrec_http_request_duration_seconds_count{method="GET",endpoint="/similar"} 1042

Paths that are not an endpoint count as ``endpoint="other"``, so that random URLs cannot grow
the label set. Each server process (``--workers``) counts its own requests.
"""
from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Callable, Iterable, Mapping

# Upper bounds in seconds: around the 50 ms target of GET /recommend, up to slow updates.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    """Thread-safe request counters and latency histograms.

    Args:
        endpoints: the paths to label by name; any other path is ``"other"``.
        gauges: name -> (help, function giving the current value), rendered with the rest.
    """

    def __init__(self, endpoints: Iterable[str],
                 gauges: Mapping[str, tuple[str, Callable[[], float]]] | None = None) -> None:
        self.endpoints = frozenset(endpoints)
        self.gauges = dict(gauges or {})
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, str, int], int] = {}
        self._latency: dict[tuple[str, str], list[float]] = {}  # bucket counts, then sum

    def endpoint(self, path: str) -> str:
        return path if path in self.endpoints else "other"

    def observe(self, method: str, path: str, status: int, seconds: float) -> None:
        """Count one answered request."""
        key = (method, self.endpoint(path))
        with self._lock:
            self._requests[(*key, status)] = self._requests.get((*key, status), 0) + 1
            row = self._latency.setdefault(key, [0.0] * (len(BUCKETS) + 2))
            row[bisect.bisect_left(BUCKETS, seconds)] += 1
            row[-1] += seconds

    def render(self) -> str:
        """All metrics in the Prometheus text exposition format (version 0.0.4)."""
        with self._lock:
            requests = sorted(self._requests.items())
            latency = sorted((k, list(v)) for k, v in self._latency.items())
        out = ["# HELP hybridrec_http_requests_total HTTP requests answered.",
               "# TYPE hybridrec_http_requests_total counter"]
        for (method, endpoint, status), count in requests:
            out.append(f'hybridrec_http_requests_total{{method="{method}",'
                       f'endpoint="{endpoint}",status="{status}"}} {count}')
        name = "hybridrec_http_request_duration_seconds"
        out += [f"# HELP {name} Time from request to the end of the response.",
                f"# TYPE {name} histogram"]
        for (method, endpoint), row in latency:
            labels = f'method="{method}",endpoint="{endpoint}"'
            total = 0
            for bound, count in zip((*BUCKETS, "+Inf"), row[:-1]):
                total += int(count)
                out.append(f'{name}_bucket{{{labels},le="{bound}"}} {total}')
            out.append(f"{name}_sum{{{labels}}} {row[-1]:.6f}")
            out.append(f"{name}_count{{{labels}}} {total}")
        for gauge, (help_text, value) in sorted(self.gauges.items()):
            out += [f"# HELP {gauge} {help_text}", f"# TYPE {gauge} gauge",
                    f"{gauge} {value()}"]
        return "\n".join(out) + "\n"


class TimingMiddleware:
    """ASGI middleware: every HTTP request into :meth:`Metrics.observe`."""

    def __init__(self, app, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start, status = time.perf_counter(), [500]

        async def send_status(message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            self.metrics.observe(scope["method"], scope["path"], status[0],
                                 time.perf_counter() - start)

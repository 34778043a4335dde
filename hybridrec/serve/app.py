"""The HTTP API: :func:`create_app` puts a run folder behind FastAPI.

=====================  =================================================================
``GET /recommend``     ``?user=196&k=10&explain=true&fallback=false``: top-k for a user
``POST /recommend``    ``{"history": ["50", "181"], "k": 10}`` or ``{"text": "...", "k": 10}``
``GET /similar``       ``?item=50&k=10``: items nearest to an item
``GET /explain``       ``?user=196&item=50``: KG paths, nearest history items, shares
``POST /items``        ``{"items": [{...}], "triples": [[h, r, t]], "links": {}, ...}``
``POST /interactions`` ``{"interactions": [{"user_id": "196", "item_id": "50"}]}``
``GET /health``        ``GET /metrics`` (Prometheus), ``GET /docs`` (OpenAPI), ``GET /``
=====================  =================================================================

Raw ids in and out; rankings are :meth:`Ranking.to_dict`, explanations
:meth:`Explanation.to_dict`. Updates are visible to the next request and on disk before the
answer (:mod:`hybridrec.serve.live`).

A bad request gets a 4xx and one line naming the field, and changes nothing::

    {"error": "k: Input should be less than or equal to 100, got 1000", "field": "k"}

400 malformed JSON, 404 unknown user or item (or path), 413 body over ``max_body`` bytes,
415 a body that is not ``application/json``, 422 a wrong type, a value out of range or bad
item rows and triples. 503: an update could not be written to disk (nothing changed).
"""
from __future__ import annotations

import gc
import json
import logging
import os
import resource
import sys
from pathlib import Path
from typing import Annotated

import anyio
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from starlette.exceptions import HTTPException

from hybridrec.data.errors import DataError
from hybridrec.recommender import UnknownIdError
from hybridrec.serve.journal import JournalError
from hybridrec.serve.live import LiveRecommender
from hybridrec.serve.telemetry import Metrics, TimingMiddleware

log = logging.getLogger(__name__)

MAX_K = 100  # longest list a request may ask for
MAX_BODY = 1 << 20  # bytes of a request body
MAX_LIST = 1000  # history items, interactions or triples in one request
MAX_NEW_ITEMS = 100  # items in one POST /items (each is encoded while updates wait)
MAX_TEXT = 2000  # characters of a sentence
MAX_ID = 256  # characters of an id
ENDPOINTS = ("/", "/recommend", "/similar", "/explain", "/items", "/interactions", "/health",
             "/metrics", "/docs", "/openapi.json")
PAGE = Path(__file__).with_name("page.html")
DEMO_USERS = 200  # user ids offered by the demo page's picker

Id = Annotated[str, StringConstraints(min_length=1, max_length=MAX_ID)]
K = Annotated[int, Query(ge=1, le=MAX_K, description=f"list length, 1 to {MAX_K}")]


class ApiError(Exception):
    """A bad request: the status, the field at fault and one line saying why."""

    def __init__(self, status: int, field: str | None, message: str) -> None:
        super().__init__(message)
        self.status, self.field, self.message = status, field, message


class _Body(BaseModel):
    # Exact JSON types (an id is a string, k an integer) and no unknown fields.
    model_config = ConfigDict(strict=True, extra="forbid")


class RecommendBody(_Body):
    """A new user: exactly one of ``history`` (item ids) and ``text`` (a sentence)."""

    history: list[Id] | None = Field(None, min_length=1, max_length=MAX_LIST)
    text: str | None = Field(None, min_length=1, max_length=MAX_TEXT)
    k: int = Field(10, ge=1, le=MAX_K)


class ItemsBody(_Body):
    """New items: rows with ``item_id`` and the training item columns (string values), KG
    triples ``[head, relation, tail]`` by raw id, links item id -> KG entity, entity labels."""

    items: list[dict[Id, str]] = Field(min_length=1, max_length=MAX_NEW_ITEMS)
    triples: list[Annotated[list[Id], Field(min_length=3, max_length=3)]] = Field(
        [], max_length=MAX_LIST)
    links: dict[Id, Id] = Field({}, max_length=MAX_NEW_ITEMS)
    entity_text: dict[Id, Annotated[str, Field(max_length=MAX_TEXT)]] = Field(
        {}, max_length=MAX_LIST)


class Interaction(_Body):
    user_id: Id
    item_id: Id


class InteractionsBody(_Body):
    """New events; a new ``user_id`` becomes a user, items must be known."""

    interactions: list[Interaction] = Field(min_length=1, max_length=MAX_LIST)


def create_app(run_folder: str | os.PathLike[str], *, max_body: int = MAX_BODY,
               shared: bool = True, warm: bool = True) -> FastAPI:
    """The API over one run folder (its journal replayed).

    Args:
        run_folder: written by ``python -m hybridrec.train`` or ``Recommender.save``.
        max_body: largest request body in bytes (default: 1 MiB).
        shared: other processes serve the same folder (see :class:`LiveRecommender`).
        warm: load the text encoder now rather than on the first sentence.
    """
    live = LiveRecommender(run_folder, shared=shared)
    if warm and live.rec.model.text_channel:
        live.rec.recommend_for_text("warm-up", k=1)
    metrics = Metrics(ENDPOINTS, {
        "hybridrec_users": ("Users known, added ones included.", lambda: len(live.rec.user_ids)),
        "hybridrec_items": ("Items known, added ones included.", lambda: live.rec.num_items),
        "hybridrec_journal_updates": ("Updates in the journal.", lambda: live.journal.entries),
        "process_resident_memory_bytes": ("Resident memory of this process.", _rss_bytes)})
    app = FastAPI(title="hybridrec", version="1", summary="A graph-plus-LLM hybrid recommender "
                  f"serving {Path(run_folder).name}: raw ids in and out, live updates.")
    app.state.live, app.state.metrics = live, metrics
    app.add_middleware(RequestLimits, max_body=max_body)
    app.add_middleware(TimingMiddleware, metrics=metrics)
    _add_error_handlers(app)
    _add_routes(app, live, metrics)
    return app


def app_from_environment() -> FastAPI:
    """:func:`create_app` configured by ``HYBRIDREC_SERVE_*`` variables, in a process of its
    own: how ``python -m hybridrec.serve`` builds the app in each worker process."""
    import torch

    torch.set_num_threads(int(os.environ.get("HYBRIDREC_SERVE_THREADS", "1")))
    # A fast call on the event loop waits at most this long for the GIL of a slow call.
    sys.setswitchinterval(0.001)
    app = create_app(os.environ["HYBRIDREC_SERVE_RUN"],
                     max_body=int(os.environ.get("HYBRIDREC_SERVE_MAX_BODY", MAX_BODY)),
                     shared=os.environ.get("HYBRIDREC_SERVE_WORKERS", "1") != "1")
    # The loaded run is some 400,000 long-lived objects (ml-100k): out of the collector's
    # sight, a full collection (0.4 s) no longer stalls every request in flight.
    gc.collect()
    gc.freeze()
    return app


def _add_routes(app: FastAPI, live: LiveRecommender, metrics: Metrics) -> None:
    # Calls of a few milliseconds or less (lists, similar items, histories, explanations and
    # explained lists) run on the event loop: no thread hop, no contention for the GIL, which
    # a thread doing Python work would wait for at every switch interval. Slower calls run
    # one at a time in a thread per queue (sentences, mostly in torch, which lets go of the
    # GIL; updates). The loop waits only while an update changes the Recommender; an update
    # waits for the reads in progress.
    async def fast(work):
        with live.reading(impatient=True) as rec:
            return work(rec)

    def encode(work):
        with live.encoding() as rec:
            return work(rec)

    limiters: dict[str, anyio.CapacityLimiter] = {}

    async def slow(call, *args, queue: str):
        if queue not in limiters:  # made on the event loop, as older anyio needs
            limiters[queue] = anyio.CapacityLimiter(1)
        return await anyio.to_thread.run_sync(call, *args, limiter=limiters[queue])

    @app.get("/recommend")
    async def recommend(user: Annotated[Id, Query(description="a known user's raw id")],
                        k: K = 10, explain: bool = False, fallback: bool = False
                        ) -> JSONResponse:
        """Top-k for a known user, seen items left out; ``explain`` adds each item's reasons,
        ``fallback`` gives popular items to an unknown user instead of a 404."""
        def work(rec) -> dict:
            if not fallback:
                _known(rec.user_ids, user, "user")
            ranking = rec.recommend(user, k=k, fallback=fallback)
            out = ranking.to_dict()
            if explain and ranking.source == "model":
                for entry in out["items"]:
                    entry["explanation"] = rec.explain(user, entry["item_id"]).to_dict()
            return out

        return JSONResponse(await fast(work))

    @app.post("/recommend")
    async def recommend_new_user(body: RecommendBody) -> JSONResponse:
        """Top-k for a new user known by an item history or by a sentence."""
        if (body.history is None) == (body.text is None):
            raise ApiError(422, "history", "give exactly one of 'history' (item ids) and "
                                           "'text' (a sentence)")
        if body.text is not None:
            if not body.text.strip():
                raise ApiError(422, "text", "text: expected a sentence, got only spaces")
            return JSONResponse(await slow(encode, lambda rec: rec.recommend_for_text(
                body.text, k=body.k).to_dict(), queue="sentences"))

        def by_history(rec) -> dict:
            for n, item in enumerate(body.history):
                _known(rec.item_ids, item, f"history[{n}]", "item")
            return rec.recommend_for_history(body.history, k=body.k).to_dict()

        return JSONResponse(await fast(by_history))

    @app.get("/similar")
    async def similar(item: Annotated[Id, Query(description="an item's raw id")], k: K = 10
                      ) -> JSONResponse:
        """The k items whose graph embeddings are closest to ``item``'s."""
        def work(rec) -> dict:
            _known(rec.item_ids, item, "item")
            return rec.similar_items(item, k=k).to_dict()

        return JSONResponse(await fast(work))

    @app.get("/explain")
    async def explain(user: Annotated[Id, Query()], item: Annotated[Id, Query()]
                      ) -> JSONResponse:
        """Why ``item`` suits ``user``: KG paths, nearest history items, each scorer's term."""
        def work(rec) -> dict:
            _known(rec.user_ids, user, "user")
            _known(rec.item_ids, item, "item")
            return rec.explain(user, item).to_dict()

        return JSONResponse(await fast(work))

    @app.post("/items")
    async def add_items(body: ItemsBody) -> JSONResponse:
        """New items, rankable at once (text encoded, KG edges attached); on disk before the
        answer."""
        try:
            added = await slow(live.add_items, body.items, body.triples, body.links,
                               body.entity_text, queue="updates")
        except DataError as err:
            field = _item_field(err)
            raise ApiError(422, field, f"{field}: {err.expected}") from None
        return JSONResponse({"added": list(added.item_ids), "edges": added.edges,
                             "skipped": list(added.skipped)})

    @app.post("/interactions")
    async def add_interactions(body: InteractionsBody) -> JSONResponse:
        """New (user, item) events; the users' lists change at once; on disk before the
        answer."""
        def check(rec) -> None:
            for n, pair in enumerate(body.interactions):
                _known(rec.item_ids, pair.item_id, f"interactions[{n}].item_id", "item")

        await fast(check)
        users = await slow(live.add_interactions,
                           [(p.user_id, p.item_id) for p in body.interactions],
                           queue="updates")
        return JSONResponse({"added": len(body.interactions), "users": users})

    @app.get("/health")
    async def health() -> JSONResponse:
        """Liveness and size: users, items, journaled updates."""
        return JSONResponse(await fast(lambda rec: {
            "status": "ok" if live.broken is None else "updates-off", "run": str(live.folder),
            "users": len(rec.user_ids), "items": rec.num_items,
            "journal_updates": live.journal.entries, "pid": os.getpid()}))

    @app.get("/metrics")
    async def prometheus() -> PlainTextResponse:
        """Request counts and latency histograms per endpoint (Prometheus text format)."""
        return PlainTextResponse(metrics.render(), media_type="text/plain; version=0.0.4")

    page = PAGE.read_text(encoding="utf-8")

    @app.get("/", response_class=HTMLResponse)
    async def demo() -> HTMLResponse:
        """The demo page: a user or a sentence, the top-10 with reasons; click to add."""
        boot = await fast(lambda rec: {"users": list(rec.user_ids.ids[:DEMO_USERS]),
                                       "run": live.folder.name})
        return HTMLResponse(page.replace("/*BOOT*/null",
                                         json.dumps(boot).replace("<", "\\u003c")))


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, err: ApiError) -> JSONResponse:
        return _error(err.status, err.field, err.message)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, err: RequestValidationError) -> JSONResponse:
        first = err.errors()[0]
        loc = tuple(first.get("loc", ()))
        if first.get("type") == "json_invalid":
            reason = (first.get("ctx") or {}).get("error", "JSON decode error")
            return _error(400, "body", f"body: malformed JSON at character {loc[-1]}: {reason}")
        field = _field(loc)
        message = f"{field}: {first.get('msg', 'invalid')}"
        value = first.get("input")
        if first.get("type") != "missing" and isinstance(value, (str, int, float, bool)) \
                and len(repr(value)) <= 60:
            message += f", got {value!r}"
        return _error(422, field, message)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, err: HTTPException) -> JSONResponse:
        if err.status_code == 400:  # a body FastAPI could not parse: bad UTF-8, too deep
            return _error(400, "body", f"body: not readable as JSON ({err.detail})")
        field = "path" if err.status_code in (404, 405) else None
        message = f"{request.method} {request.url.path}: {err.detail}"
        return _error(err.status_code, field, message, getattr(err, "headers", None))

    @app.exception_handler(UnknownIdError)
    async def unknown(request: Request, err: UnknownIdError) -> JSONResponse:
        # Ids are checked by field before each call; this is the Recommender's own guard.
        return _error(404, None, str(err))

    @app.exception_handler(JournalError)
    async def not_saved(request: Request, err: JournalError) -> JSONResponse:
        log.error("update refused: %s", err)
        return _error(503, None, str(err))

    @app.exception_handler(ValueError)
    async def bad_value(request: Request, err: ValueError) -> JSONResponse:
        return _error(422, None, str(err))

    @app.exception_handler(Exception)
    async def failed(request: Request, err: Exception) -> JSONResponse:
        log.exception("%s %s failed", request.method, request.url.path)
        return _error(500, None, f"internal error: {type(err).__name__}")


class RequestLimits:
    """ASGI middleware: a request body is JSON (415 otherwise) of at most ``max_body``
    bytes (413 otherwise, before more is read)."""

    def __init__(self, app, max_body: int) -> None:
        self.app, self.max_body = app, max_body

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                   for k, v in scope["headers"]}
        kind = headers.get("content-type", "").split(";")[0].strip().lower()
        if kind != "application/json":
            await _send(send, _error(415, "Content-Type", "Content-Type: expected "
                                     f"application/json, got {kind or 'none'!r}"))
            return
        declared = headers.get("content-length", "")
        too_big = _error(413, "body", f"body: at most {self.max_body} bytes")
        if declared.isdigit() and int(declared) > self.max_body:
            await _send(send, too_big)
            return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_body:
                await _send(send, too_big)
                return
            if not message.get("more_body", False):
                break
        body, delivered = b"".join(chunks), False

        async def replay():
            nonlocal delivered
            if delivered:
                return await receive()
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


def _known(ids, raw: str, field: str, what: str | None = None) -> None:
    if raw not in ids:
        what = what or field
        raise ApiError(404, field, f"{field}: unknown {what} {raw!r}")


def _field(loc: tuple) -> str:
    """``("body", "items", 0, "title")`` -> ``"items[0].title"``; ``("query", "k")`` -> ``"k"``."""
    parts = loc[1:] if loc and loc[0] in ("body", "query", "path", "header") else loc
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else f"{'.' if out else ''}{part}"
    return out or "body"


def _item_field(err: DataError) -> str:
    """The request field of an ``add_items`` error (its row is 1-based)."""
    row = 0 if err.row is None else err.row - 1
    if err.field in ("relation", "triples"):
        return f"triples[{row}]"
    if err.field in (None, "links"):
        return err.field or "items"
    return f"items[{row}].{err.field}"


def _error(status: int, field: str | None, message: str,
           headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": " ".join(str(message).split()), "field": field},
                        status_code=status, headers=headers)


async def _send(send, response: JSONResponse) -> None:
    await send({"type": "http.response.start", "status": response.status_code,
                "headers": response.raw_headers})
    await send({"type": "http.response.body", "body": response.body})


def _rss_bytes() -> int:
    """Resident memory of this process (Linux ``/proc``; else the peak)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

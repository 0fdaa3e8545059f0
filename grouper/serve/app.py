"""The HTTP application: routes, limits, errors as application/problem+json, metrics, reload.

Built on Starlette (an ASGI toolkit) and served by uvicorn (grouper.serve.commands). Every route is
versioned under /v1 except the probes (/healthz, /readyz), /metrics, /openapi.json and the page (/).
A single case to group without an estimate is grouped on the event loop by grouper.onecase (~0.15 ms,
no thread hop); other work runs in a thread pool (Polars and the kernels release the GIL) so the event
loop keeps accepting requests, and single cases to estimate (priced by the settle engine) or that
onecase leaves to the batch pipeline, arriving together, are handled together (`Batcher`).
"""
from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import resources
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from ..errors import GrouperError
from . import hsa, service
from .jsonio import dumps, frame_json, loads
from .cases import FIELD_DOCS, FIELDS, ShapeError, batch_frame, case_frame, check_case
from .service import Settings, State, UnsupportedError

log = logging.getLogger("grouper.serve")
PROBLEM = "application/problem+json"


class JSONResponse(Response):
    """A JSON answer written by grouper.serve.jsonio (orjson; compact UTF-8, as Starlette's own)."""

    media_type = "application/json"

    def render(self, content) -> bytes:
        return dumps(content)


@dataclass
class Limits:
    max_body: int = 16 << 20         # bytes of one request body
    max_cases: int = 10_000          # cases in one batch request
    timeout: float = 30.0            # seconds of work for one request
    token: str | None = None         # bearer token of the admin endpoints (None: admin endpoints refuse all)
    cors_origins: tuple[str, ...] = ()


class Problem(Exception):
    """An RFC 7807 answer: status, title, detail, and the request field it is about."""

    def __init__(self, status: int, title: str, detail: str = "", field: str | None = None, **extra):
        super().__init__(detail or title)
        self.status, self.title, self.detail, self.field, self.extra = status, title, detail, field, extra

    def response(self) -> JSONResponse:
        body = {"type": f"https://grouper.invalid/problems/{self.title.lower().replace(' ', '-')}", "title": self.title,
                "status": self.status, "detail": self.detail}
        if self.field:
            body["field"] = self.field
        body.update(self.extra)
        headers = {"Retry-After": "1"} if self.status == 503 else None
        return JSONResponse(body, status_code=self.status, media_type=PROBLEM, headers=headers)


# ---- metrics (Prometheus text format) --------------------------------------------------------
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass
class Metrics:
    requests: dict = field(default_factory=dict)     # (route, status) → count
    durations: dict = field(default_factory=dict)    # route → [bucket counts..., sum, count]
    cases: dict = field(default_factory=dict)        # (kind, status) → count
    reloads: dict = field(default_factory=dict)      # result → count
    in_flight: int = 0
    started: float = field(default_factory=time.time)

    def observe(self, route: str, status: int, seconds: float) -> None:
        self.requests[(route, status)] = self.requests.get((route, status), 0) + 1
        hist = self.durations.setdefault(route, [0] * (len(BUCKETS) + 2))
        for i, bound in enumerate(BUCKETS):
            if seconds <= bound:
                hist[i] += 1
        hist[-2] += seconds
        hist[-1] += 1

    def count_cases(self, kind: str, statuses, counts=None) -> None:
        """Count cases by status: one each of `statuses`, and `counts` (status → number) when given."""
        for status, n in [*((status, 1) for status in statuses), *(counts or {}).items()]:
            key = (kind, status or "none")
            self.cases[key] = self.cases.get(key, 0) + n

    def text(self, state: State) -> str:
        lines = ["# HELP grouper_http_requests_total HTTP requests by route and status code.",
                 "# TYPE grouper_http_requests_total counter"]
        lines += [f'grouper_http_requests_total{{route="{r}",code="{s}"}} {n}' for (r, s), n in sorted(self.requests.items())]
        lines += ["# HELP grouper_http_request_duration_seconds Time to answer a request.",
                  "# TYPE grouper_http_request_duration_seconds histogram"]
        for route, hist in sorted(self.durations.items()):
            for bound, n in zip(BUCKETS, hist):
                lines.append(f'grouper_http_request_duration_seconds_bucket{{route="{route}",le="{bound}"}} {n}')
            lines.append(f'grouper_http_request_duration_seconds_bucket{{route="{route}",le="+Inf"}} {hist[-1]}')
            lines.append(f'grouper_http_request_duration_seconds_sum{{route="{route}"}} {hist[-2]:.6f}')
            lines.append(f'grouper_http_request_duration_seconds_count{{route="{route}"}} {hist[-1]}')
        lines += ["# HELP grouper_cases_total Cases grouped, by pack kind and result status.",
                  "# TYPE grouper_cases_total counter"]
        lines += [f'grouper_cases_total{{kind="{k}",status="{s}"}} {n}' for (k, s), n in sorted(self.cases.items())]
        lines += ["# HELP grouper_reloads_total Reloads asked for, by result.", "# TYPE grouper_reloads_total counter"]
        lines += [f'grouper_reloads_total{{result="{r}"}} {n}' for r, n in sorted(self.reloads.items())]
        lines += ["# HELP grouper_requests_in_flight Requests being answered.", "# TYPE grouper_requests_in_flight gauge",
                  f"grouper_requests_in_flight {self.in_flight}",
                  "# HELP grouper_pack_info The packs served (value 1).", "# TYPE grouper_pack_info gauge"]
        for kind, packs in state.packs.items():
            for p in packs:
                lines.append(f'grouper_pack_info{{kind="{kind}",name="{_label(p.name)}",version="{_label(p.version)}",'
                             f'from="{p.start or ""}"}} 1')
        lines += ["# HELP grouper_state_generation Reloads that succeeded, plus one.", "# TYPE grouper_state_generation gauge",
                  f"grouper_state_generation {state.generation}",
                  "# HELP grouper_uptime_seconds Seconds since the server started.", "# TYPE grouper_uptime_seconds gauge",
                  f"grouper_uptime_seconds {time.time() - self.started:.3f}"]
        return "\n".join(lines) + "\n"


def _label(text: str) -> str:
    return str(text).replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")


# ---- coalescing single cases -----------------------------------------------------------------
class Batcher:
    """Groups the single cases of concurrent requests together: while one batch is being grouped,
    the cases that arrive wait and go in the next. One case alone is grouped at once."""

    def __init__(self, runtime: "Runtime", max_cases: int = 256):
        self.runtime, self.max_cases = runtime, max_cases
        self.pending: list[tuple[tuple, dict, asyncio.Future]] = []
        self.running = False

    async def submit(self, key: tuple, case: dict) -> dict:
        future = asyncio.get_running_loop().create_future()
        self.pending.append((key, case, future))
        if not self.running:
            self.running = True
            asyncio.get_running_loop().create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            while self.pending:
                key = self.pending[0][0]
                batch = [item for item in self.pending if item[0] == key][: self.max_cases]
                taken = {id(item) for item in batch}
                self.pending = [item for item in self.pending if id(item) not in taken]
                state = self.runtime.state
                kind, estimate, problems = key
                cases = [case for _, case, _ in batch]
                try:
                    results = await self.runtime.work(_group_many, state, cases, kind, estimate, problems)
                except Exception as exc:   # each request gets the error of its batch
                    if len(batch) > 1:      # one bad case must not fail the others: retry one by one
                        for _, case, future in batch:
                            try:
                                result = (await self.runtime.work(_group_many, state, [case], kind, estimate, problems))[0]
                                future.done() or future.set_result(result)
                            except Exception as one:
                                future.done() or future.set_exception(one)
                        continue
                    for _, _, future in batch:
                        future.done() or future.set_exception(exc)
                    continue
                self.runtime.metrics.count_cases(kind, (r["status"] for r in results))
                for (_, _, future), result in zip(batch, results):
                    future.done() or future.set_result(result)
        finally:
            self.running = False


def _group_many(state: State, cases: list, kind: str, estimate: bool, problems: bool) -> list[dict]:
    return service.group_many(state, cases, kind, estimate=estimate, problems=problems)


# ---- the runtime -----------------------------------------------------------------------------
class Runtime:
    """The server's mutable part: the current State (swapped whole on reload), metrics, the pool."""

    def __init__(self, state: State, limits: Limits, threads: int = 4):
        self.state = state
        self.limits = limits
        self.metrics = Metrics()
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="grouper-serve")
        self.reload_lock = asyncio.Lock()
        self.batcher = Batcher(self)
        self.draining = False

    async def work(self, function, *args):
        """Run a function in the pool, bounded by the request timeout."""
        loop = asyncio.get_running_loop()
        try:
            return await asyncio.wait_for(loop.run_in_executor(self.pool, function, *args), self.limits.timeout)
        except asyncio.TimeoutError:
            raise Problem(503, "Timed out", f"the request took longer than {self.limits.timeout:g} s; split a batch "
                                            "into smaller requests") from None

    async def reload(self) -> State:
        async with self.reload_lock:
            old = self.state
            try:
                new = await asyncio.get_running_loop().run_in_executor(
                    self.pool, service.load_state, old.settings, old.generation + 1)
            except GrouperError as exc:
                self.metrics.reloads["refused"] = self.metrics.reloads.get("refused", 0) + 1
                log.warning("reload refused; still serving generation %s: %s", old.generation, exc)
                raise Problem(422, "Reload refused", "the new packs, policy or weights did not load; the server "
                              f"keeps serving generation {old.generation}", diagnostics=service.diagnostics_json(exc)) from None
            self.state = new   # one reference: requests in flight keep the State they started with
            self.metrics.reloads["ok"] = self.metrics.reloads.get("ok", 0) + 1
            log.info("reloaded: generation %s", new.generation)
            return new


# ---- request helpers -------------------------------------------------------------------------
async def read_json(request: Request, limits: Limits):
    """The body as JSON, within the size limit; 413 / 415 / 400 otherwise."""
    return parse_json(await read_body(request, limits))


async def read_body(request: Request, limits: Limits) -> bytes:
    """The body of a JSON request, within the size limit; 413 / 415 / 400 (empty) otherwise."""
    kind = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    if kind and kind != "application/json" and not kind.endswith("+json"):
        raise Problem(415, "Unsupported media type", f"send JSON (Content-Type: application/json), not {kind}")
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > limits.max_body):
        raise Problem(413, "Request too large", f"the body is limited to {limits.max_body:,} bytes")
    chunks, size = [], 0
    try:
        async with asyncio.timeout(limits.timeout):   # a body trickling in must not hold a connection forever
            async for chunk in request.stream():
                size += len(chunk)
                if size > limits.max_body:
                    raise Problem(413, "Request too large", f"the body is limited to {limits.max_body:,} bytes")
                chunks.append(chunk)
    except TimeoutError:
        raise Problem(408, "Request timeout", f"the body did not arrive within {limits.timeout:g} s") from None
    body = b"".join(chunks)
    if not body:
        raise Problem(400, "Empty body", "the request needs a JSON body")
    return body


def parse_json(body: bytes):
    """A request body's JSON value; 400 with the reason when it is not JSON."""
    try:
        return loads(body)
    except UnicodeDecodeError:
        raise Problem(400, "Malformed JSON", "the body is not UTF-8") from None
    except json.JSONDecodeError as exc:
        raise Problem(400, "Malformed JSON", f"{exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise Problem(400, "Malformed JSON", "nested too deeply") from None


def query(request: Request, allowed: set[str]) -> dict:
    unknown = sorted(set(request.query_params) - allowed)
    if unknown:
        raise Problem(400, "Unknown query parameter", f"{unknown[0]!r} is not a parameter of this endpoint "
                      f"(it takes: {', '.join(sorted(allowed)) or 'none'})", field=unknown[0])
    return dict(request.query_params)


def flag(params: dict, name: str, default: bool) -> bool:
    value = params.get(name)
    if value is None:
        return default
    if value.lower() in ("1", "true", "yes"):
        return True
    if value.lower() in ("0", "false", "no"):
        return False
    raise Problem(400, "Bad query parameter", f"{name} is true or false, not {value!r}", field=name)


def kind_of(params: dict, state: State) -> str:
    kind = params.get("kind") or state.default_kind()
    if kind not in state.kinds():
        raise Problem(400, "Bad query parameter", f"kind {kind!r} is not served; served: {', '.join(state.kinds())}",
                      field="kind")
    return kind


def object_body(body, name: str = "(body)") -> dict:
    if not isinstance(body, dict):
        raise ShapeError(name, "expected a JSON object")
    return body


def only_keys(body: dict, allowed: tuple[str, ...], required: tuple[str, ...] = ()) -> None:
    for key in body:
        if key not in allowed:
            raise ShapeError(key, f"unknown field; this request has {', '.join(allowed)}")
    for key in required:
        if key not in body:
            raise ShapeError(key, "required")


# ---- the lean path of the busiest routes -----------------------------------------------------
class LeanRequest:
    """What the handlers read of a request (headers, query parameters, the body stream), straight from
    the ASGI scope: the one-case routes skip Starlette's routing, middleware and Request, a third of
    the server's time for a single case."""

    __slots__ = ("scope", "_receive", "headers", "query_params")

    def __init__(self, scope, receive):
        self.scope, self._receive = scope, receive
        headers: dict[str, str] = {}
        for name, value in scope["headers"]:   # ASGI names are lower case; the first of a repeated one, as Starlette
            headers.setdefault(name.decode("latin-1"), value.decode("latin-1"))
        self.headers = headers
        query_string = scope["query_string"]
        self.query_params = dict(parse_qsl(query_string.decode("latin-1"), keep_blank_values=True)) if query_string else {}

    async def stream(self):
        while True:
            message = await self._receive()
            if message["type"] == "http.request":
                body = message.get("body", b"")
                if body:
                    yield body
                if not message.get("more_body", False):
                    return
            elif message["type"] == "http.disconnect":
                raise ClientDisconnect()


class Front:
    """The ASGI application: POST to a route of `lean` is answered by its handler on a LeanRequest; every
    other request goes to the Starlette application."""

    def __init__(self, app: Starlette, lean: dict):
        self.app, self.lean, self.state = app, lean, app.state

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["method"] == "POST":
            handler = self.lean.get(scope["path"])
            if handler is not None:
                response = await handler(LeanRequest(scope, receive))
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


# ---- the application -------------------------------------------------------------------------
def create_app(settings: Settings | None = None, limits: Limits | None = None, *, state: State | None = None,
               threads: int = 4) -> Front:
    """The ASGI application. `settings` are loaded now (a bad pack fails here, before serving)."""
    limits = limits or Limits()
    runtime = Runtime(state or service.load_state(settings or Settings()), limits, threads)

    def endpoint(name: str, handler, *, admin: bool = False):
        async def run(request: Request) -> Response:
            started = time.perf_counter()
            runtime.metrics.in_flight += 1
            status = 500
            try:
                if admin:
                    _authorise(request, limits)
                response = await handler(request)
            except Problem as problem:
                response = problem.response()
            except ShapeError as exc:
                response = Problem(422, "Invalid request", exc.reason, field=exc.field).response()
            except UnsupportedError as exc:
                response = Problem(501, "Not served", str(exc)).response()
            except GrouperError as exc:   # InputError and kin: the request asked for something impossible
                response = Problem(422, "Invalid request", str(exc)).response()
            except Exception:
                log.exception("unexpected error in %s", name)
                response = Problem(500, "Internal error", "the server failed; the log has the details").response()
            finally:
                runtime.metrics.in_flight -= 1
            status = response.status_code
            runtime.metrics.observe(name, status, time.perf_counter() - started)
            return response
        return run

    async def group_one(request: Request) -> Response:
        params = query(request, {"kind", "estimate", "problems"})
        state = runtime.state
        kind = kind_of(params, state)
        case = await read_json(request, limits)
        text = check_case(case, "case")
        if case.get("id") is None:   # alone in its request, whatever batch it is grouped in
            case, text["id"] = {**case, "id": 1}, "1"
        key = (kind, flag(params, "estimate", state.pricing is not None), flag(params, "problems", False))
        # ~0.15 ms in plain Python (grouper.onecase): answered here, without a hop to the pool. A case it
        # declines, or one to estimate (the settle engine prices it), goes to the pool with the other such
        # cases of the moment (Batcher)
        result = None if key[1] and state.pricing is not None else service.group_one_fast(state, case, kind,
                                                                                        problems=key[2], text=text)
        if result is None:
            return JSONResponse(await runtime.batcher.submit(key, case))
        runtime.metrics.count_cases(kind, (result["status"],))
        return JSONResponse(result)

    async def group_batch(request: Request) -> Response:
        params = query(request, {"kind", "estimate", "problems"})
        state = runtime.state
        kind = kind_of(params, state)
        body = await read_body(request, limits)
        try:
            estimate, problems = flag(params, "estimate", False), flag(params, "problems", False)
        except Problem:   # answered below, after the body's own errors, as ever
            content = None
        else:   # a body of the plain shape: read straight into columns (None: any other body)
            content = await runtime.work(_plain_batch_json, runtime, state, body, limits.max_cases, kind, estimate,
                                         problems)
        if content is None:
            body = object_body(parse_json(body))
            only_keys(body, ("cases",), ("cases",))
            cases = body["cases"]
            if not isinstance(cases, list):
                raise ShapeError("cases", "expected an array of cases")
            if len(cases) > limits.max_cases:
                raise Problem(413, "Too many cases", f"{len(cases):,} cases; at most {limits.max_cases:,} per request",
                              field="cases")
            estimate, problems = flag(params, "estimate", False), flag(params, "problems", False)
            content = await runtime.work(_batch_json, runtime, state, cases, kind, estimate, problems)
        return Response(content, media_type="application/json")

    def one_case(function):
        """A route whose body is one case, answered by function(state, case, kind)."""
        async def handler(request: Request) -> Response:
            params = query(request, {"kind"})
            state = runtime.state
            case = object_body(await read_json(request, limits), "case")
            return JSONResponse(await runtime.work(function, state, case, kind_of(params, state)))
        return handler

    async def estimate(request: Request) -> Response:
        params = query(request, {"kind"})
        state = runtime.state
        case = object_body(await read_json(request, limits), "case")
        kind = kind_of(params, state)
        if state.pricing is None:
            return JSONResponse(await runtime.work(service.estimate_one, state, case, kind))   # 501 with the reason
        check_case(case, "case")
        if case.get("id") is None:   # alone in its request, whatever batch it is priced in
            case = {**case, "id": 1}
        return JSONResponse(await runtime.batcher.submit((kind, True, False), case))

    async def what_if(request: Request) -> Response:
        params = query(request, {"kind"})
        state = runtime.state
        body = object_body(await read_json(request, limits))
        only_keys(body, ("case", "try"), ("case", "try"))
        tries = body["try"] if isinstance(body["try"], list) else [body["try"]]
        if len(tries) > 100:
            raise Problem(413, "Too many scenarios", "at most 100 scenarios per request", field="try")
        rows = await runtime.work(service.try_scenarios, state, object_body(body["case"], "case"), tries,
                                  kind_of(params, state))
        return JSONResponse({"what_if": rows})

    async def recommend(request: Request) -> Response:
        params = query(request, {"kind"})
        state = runtime.state
        body = object_body(await read_json(request, limits))
        only_keys(body, ("case", "candidates"), ("case",))
        candidates = body.get("candidates") or {}
        if not isinstance(candidates, dict):
            raise ShapeError("candidates", 'expected {"dx": [codes], "proc": [codes]}')
        for key, codes in candidates.items():
            if key not in ("dx", "proc"):
                raise ShapeError(f"candidates.{key}", "unknown field; candidates has dx and proc")
            if not isinstance(codes, list) or not all(isinstance(c, str) and 0 < len(c) <= 40 for c in codes) \
                    or len(codes) > 100:
                raise ShapeError(f"candidates.{key}", "expected an array of at most 100 codes")
        return JSONResponse(await runtime.work(service.recommend, state, object_body(body["case"], "case"), candidates,
                                               kind_of(params, state)))

    async def hsa_envelope(request: Request) -> Response:
        infno = request.path_params["infno"]
        received = hsa._now()
        if infno not in hsa.INFNOS:
            raise Problem(404, "Unknown transaction", f"infno {infno} is not served; served: {', '.join(hsa.INFNOS)}")
        query(request, set())
        state = runtime.state
        try:
            body = await read_json(request, limits)
            data, encounters = hsa.read_envelope(body, infno)
            if len(encounters) > limits.max_cases:
                raise Problem(413, "Too many cases", f"at most {limits.max_cases:,} encounters per request")
            results = await runtime.work(_group_many, state, [c for _, _, c in encounters], state.default_kind(),
                                         state.pricing is not None, True)
        except ShapeError as exc:
            return JSONResponse(hsa.error_envelope(f"{exc.field}: {exc.reason}", received), status_code=422)
        except Problem as problem:
            return JSONResponse(hsa.error_envelope(problem.detail or problem.title, received), status_code=problem.status)
        runtime.metrics.count_cases(state.default_kind(), (r["status"] for r in results))
        return JSONResponse(hsa.answer(body, data, encounters, results, received))

    async def packs(request: Request) -> Response:
        query(request, set())
        return JSONResponse(runtime.state.describe())

    async def codes(request: Request) -> Response:
        params = query(request, {"q", "kind", "limit"})
        kind = params.get("kind")
        if kind not in (None, "dx", "proc"):
            raise Problem(400, "Bad query parameter", "kind is dx or proc", field="kind")
        limit = params.get("limit", "20")
        if not limit.isdigit() or not 1 <= int(limit) <= 200:
            raise Problem(400, "Bad query parameter", "limit is a whole number from 1 to 200", field="limit")
        q = params.get("q", "")
        if len(q) > 50:
            raise Problem(400, "Bad query parameter", "q is at most 50 characters", field="q")
        return JSONResponse({"codes": service.search_codes(runtime.state, q, kind, int(limit))})

    async def reload(request: Request) -> Response:
        query(request, set())
        async for chunk in request.stream():
            if chunk:   # never a path from a request: the files are the ones the server was started with
                raise Problem(400, "Unexpected body", "reload takes no body: it reads again the packs, policy and "
                                                      "weights the server was started with")
        new = await runtime.reload()
        return JSONResponse({"reloaded": True, **new.describe()})

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        if runtime.draining:
            return JSONResponse({"status": "shutting down"}, status_code=503)
        return JSONResponse({"status": "ready", "generation": runtime.state.generation})

    async def metrics(request: Request) -> Response:
        return Response(runtime.metrics.text(runtime.state), media_type="text/plain; version=0.0.4; charset=utf-8")

    async def openapi(request: Request) -> Response:
        return JSONResponse(openapi_document())

    async def page(request: Request) -> Response:
        html = resources.files("grouper.serve").joinpath("page.html").read_text(encoding="utf-8")
        return HTMLResponse(html, headers={"Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
                                                                      "script-src 'self' 'unsafe-inline'"})

    async def not_found(request: Request, exc) -> Response:
        status = getattr(exc, "status_code", 404)
        title = "Method not allowed" if status == 405 else "Not found"
        return Problem(status, title, f"{request.method} {request.url.path}: see /openapi.json for the endpoints").response()

    routes = [
        Route("/v1/group", endpoint("group", group_one), methods=["POST"]),   # the busiest route first
        Route("/", endpoint("page", page), methods=["GET"]),
        Route("/healthz", endpoint("healthz", healthz), methods=["GET"]),
        Route("/readyz", endpoint("readyz", readyz), methods=["GET"]),
        Route("/metrics", endpoint("metrics", metrics), methods=["GET"]),
        Route("/openapi.json", endpoint("openapi", openapi), methods=["GET"]),
        Route("/v1/packs", endpoint("packs", packs), methods=["GET"]),
        Route("/v1/codes", endpoint("codes", codes), methods=["GET"]),
        Route("/v1/group/batch", endpoint("group_batch", group_batch), methods=["POST"]),
        Route("/v1/explain", endpoint("explain", one_case(service.explain)), methods=["POST"]),
        Route("/v1/what-if", endpoint("what_if", what_if), methods=["POST"]),
        Route("/v1/recommend", endpoint("recommend", recommend), methods=["POST"]),
        Route("/v1/estimate", endpoint("estimate", estimate), methods=["POST"]),
        Route("/v1/hsa/{infno}", endpoint("hsa", hsa_envelope), methods=["POST"]),
        Route("/v1/admin/reload", endpoint("reload", reload, admin=True), methods=["POST"]),
    ]
    middleware = []
    if limits.cors_origins:
        from starlette.middleware import Middleware
        from starlette.middleware.cors import CORSMiddleware

        middleware.append(Middleware(CORSMiddleware, allow_origins=list(limits.cors_origins),
                                     allow_methods=["GET", "POST"], allow_headers=["Content-Type", "Authorization"]))

    @contextlib.asynccontextmanager
    async def lifespan(app):
        loop = asyncio.get_running_loop()
        try:   # SIGHUP reloads, as daemons do (a refused reload is logged; the old state keeps serving)
            loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(_reload_quietly(runtime)))
        except (NotImplementedError, RuntimeError, ValueError):
            pass
        yield
        runtime.draining = True
        runtime.pool.shutdown(wait=True)

    app = Starlette(routes=routes, middleware=middleware, exception_handlers={404: not_found, 405: not_found},
                    lifespan=lifespan)
    app.state.runtime = runtime
    # the one-case routes by the lean path (CORS, when configured, needs Starlette's middleware on every route)
    lean = {} if middleware else {route.path: route.endpoint for route in routes if route.path in LEAN_ROUTES}
    return Front(app, lean)


LEAN_ROUTES = ("/v1/group", "/v1/estimate")


async def _reload_quietly(runtime: Runtime) -> None:
    try:
        await runtime.reload()
    except Problem:
        pass


def _authorise(request: Request, limits: Limits) -> None:
    if limits.token is None:
        raise Problem(403, "Forbidden", "admin endpoints are off: start the server with a token "
                                        "(--token-file FILE or GROUPER_SERVE_TOKEN) to use them")
    given = request.headers.get("authorization", "")
    scheme, _, token = given.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), limits.token.encode()):
        raise Problem(401, "Unauthorized", "send the admin token as Authorization: Bearer TOKEN")


def _plain_batch_json(runtime: Runtime, state: State, body: bytes, max_cases: int, kind: str, estimate: bool,
                      problems: bool) -> bytes | None:
    """`_batch_json` of a batch body read straight into columns (cases.batch_frame); None when the body
    is not of the plain shape that reader takes."""
    raw = batch_frame(body, max_cases)
    return None if raw is None else _answer(runtime, state, raw, kind, estimate, problems)


def _batch_json(runtime: Runtime, state: State, cases: list, kind: str, estimate: bool, problems: bool) -> bytes:
    """A batch's results as JSON bytes."""
    return _answer(runtime, state, case_frame(cases), kind, estimate, problems)


def _answer(runtime: Runtime, state: State, raw, kind: str, estimate: bool, problems: bool) -> bytes:
    """The results of a batch's raw frame as JSON bytes; without estimates or problems straight from the
    result columns (jsonio.frame_json)."""
    grouped = service.group_raw(state, raw, kind, problems=problems, settlement=estimate)
    runtime.metrics.count_cases(kind, (), dict(grouped.results["status"].value_counts().iter_rows()))
    if estimate or problems:
        rows = service.result_dicts(state, grouped, with_estimate=estimate)
        return dumps({"count": len(rows), "results": rows})
    frame = service.result_frame(grouped)
    return b'{"count":%d,"results":%s}' % (frame.height, frame_json(frame))


# ---- OpenAPI ---------------------------------------------------------------------------------
def _case_schema() -> dict:
    text = {"type": ["string", "integer", "number", "null"]}
    codes = {"oneOf": [{"type": "array", "items": {"type": "string"}, "maxItems": 100}, {"type": "string"}, {"type": "null"}]}
    props = {}
    for name in FIELDS:
        base = codes if name in ("dx", "proc") else ({"type": ["boolean", "string", "integer", "null"]}
                                                     if name == "special_review" else text)
        props[name] = {**base, "description": FIELD_DOCS[name]}
    return {"type": "object", "additionalProperties": False, "properties": props}


def openapi_document() -> dict:
    from ..version import __version__

    case = {"$ref": "#/components/schemas/Case"}
    problem = {"description": "a problem (RFC 7807) naming the field",
               "content": {PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}}}
    ok = {"description": "OK", "content": {"application/json": {"schema": {"type": "object"}}}}
    kind = {"name": "kind", "in": "query", "schema": {"type": "string", "enum": ["drg", "dip"]},
            "description": "which packs (default: DRG when served)"}
    booleans = [{"name": n, "in": "query", "schema": {"type": "boolean"}, "description": d} for n, d in
                (("estimate", "add the 预结算 estimate (default: on for /v1/group when a policy is served, off for batches)"),
                 ("problems", "add each case's validation problems"))]

    def post(summary: str, body: dict, params=(kind,)) -> dict:
        return {"post": {"summary": summary, "parameters": list(params),
                         "requestBody": {"required": True, "content": {"application/json": {"schema": body}}},
                         "responses": {"200": ok, "400": problem, "413": problem, "415": problem, "422": problem,
                                       "503": problem}}}

    def get(summary: str, params=()) -> dict:
        return {"get": {"summary": summary, "parameters": list(params), "responses": {"200": ok}}}

    return {
        "openapi": "3.1.0",
        "info": {"title": "grouper serve", "version": __version__,
                 "description": "CHS-DRG / DIP pre-grouping (预分组), explain, what-if and 预结算 over HTTP"},
        "paths": {
            "/v1/group": post("group one case", case, (kind, *booleans)),
            "/v1/group/batch": post("group a batch of cases", {"type": "object", "required": ["cases"],
                                    "additionalProperties": False,
                                    "properties": {"cases": {"type": "array", "items": case}}}, (kind, *booleans)),
            "/v1/explain": post("the decision path of one case (grouper explain --json)", case),
            "/v1/what-if": post("the case under scenarios (grouper explain --try)", {
                "type": "object", "required": ["case", "try"], "additionalProperties": False,
                "properties": {"case": case, "try": {"type": "array", "items": {"type": "string"}, "maxItems": 100}}}),
            "/v1/recommend": post("single changes that move the case to another group", {
                "type": "object", "required": ["case"], "additionalProperties": False,
                "properties": {"case": case, "candidates": {"type": "object", "additionalProperties": False, "properties": {
                    "dx": {"type": "array", "items": {"type": "string"}}, "proc": {"type": "array", "items": {"type": "string"}}}}}}),
            "/v1/estimate": post("预结算 of one case under the policy served", case),
            "/v1/hsa/{infno}": {**post("医保信息平台 envelope, infno 3101 / 3102", {"type": "object"}, ()),
                                "parameters": [{"name": "infno", "in": "path", "required": True,
                                                "schema": {"type": "string", "enum": list(hsa.INFNOS)}}]},
            "/v1/packs": get("the packs, policy and point value served"),
            "/v1/codes": get("search diagnosis and procedure codes by code or Chinese name", [
                {"name": "q", "in": "query", "schema": {"type": "string", "maxLength": 50}},
                {"name": "kind", "in": "query", "schema": {"type": "string", "enum": ["dx", "proc"]}},
                {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 200}}]),
            "/v1/admin/reload": {"post": {"summary": "reload packs, policy and weights (bearer token)",
                                          "security": [{"bearer": []}],
                                          "responses": {"200": ok, "401": problem, "403": problem, "422": problem}}},
            "/healthz": get("liveness"), "/readyz": get("readiness (503 while shutting down)"),
            "/metrics": get("Prometheus metrics"), "/": get("the pre-grouping page (预分组)"),
        },
        "components": {
            "schemas": {"Case": _case_schema(), "Problem": {"type": "object", "properties": {
                "type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
                "detail": {"type": "string"}, "field": {"type": "string"}}}},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }

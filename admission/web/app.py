"""The ops application: ``/metrics``, ``/healthz`` and the token-guarded decisions view.

Pages are server-rendered Jinja templates with autoescaping (every recorded
value is text, never markup), no JavaScript at all, and a Content Security
Policy that allows none, plus ``no-store`` caching and framing denied.  The
decision database is opened read-only on first use and kept; while it cannot
be read the pages say why (HTTP 503) and the rest of the port keeps working.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, redirect, render_template, request, url_for

from admission import metrics
from admission.decisions import query
from admission.decisions.store import DecisionDatabase, open_database
from admission.web import overview, pages, views
from admission.web.auth import COOKIE, TokenGate
from attest.errors import AttestError, UsageError

log = logging.getLogger(__name__)

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 0 1.5rem 2rem; color: #1d2330; }
header { display: flex; gap: 1rem; align-items: baseline; border-bottom: 1px solid #ccd;
  margin-bottom: 1rem; }
header h1 { font-size: 1.2rem; margin: .8rem 0; }
header form { margin-left: auto; }
table { border-collapse: collapse; width: 100%; margin: .5rem 0 1rem; }
th, td { text-align: left; vertical-align: top; padding: .3rem .5rem; border-bottom: 1px solid #e3e6ee; }
th { background: #f4f5f9; }
code, .mono { font-family: ui-monospace, monospace; font-size: 12px; word-break: break-all; }
.result { font-weight: 600; padding: .1rem .4rem; border-radius: 3px; }
.result-allowed { background: #dff3e4; } .result-warned { background: #fff1cc; }
.result-denied, .result-error, .result-timed_out { background: #fbdcdc; }
.ok { color: #17692f; } .bad { color: #a3161b; }
form.filters { display: flex; flex-wrap: wrap; gap: .5rem; align-items: end; }
form.filters label { display: flex; flex-direction: column; font-size: 12px; }
.error { background: #fbdcdc; padding: .5rem; border-radius: 3px; }
section.image { border: 1px solid #dde; border-radius: 4px; padding: .2rem 1rem; margin: 1rem 0; }
dl { display: grid; grid-template-columns: max-content auto; gap: .2rem 1rem; }
dt { font-weight: 600; } dd { margin: 0; }
header nav { font-size: 14px; }
section { margin: 1rem 0 1.5rem; }
svg.chart { display: block; max-width: 100%; height: auto; }
pre { background: #f4f5f9; padding: .5rem; overflow: auto; max-height: 30rem; }
"""


class _ReadOnlyDatabase:
    """The decision database, opened on first successful use and then kept."""

    def __init__(self, target: str | None) -> None:
        self.target = target
        self._database: DecisionDatabase | None = None
        self._lock = threading.Lock()

    def get(self) -> DecisionDatabase:
        with self._lock:
            if self._database is None:
                if not self.target:
                    raise UsageError("no decision database configured (--db / ATTEST_DB)")
                self._database = open_database(self.target, create=False)
            return self._database

    def close(self) -> None:
        with self._lock:
            if self._database is not None:
                self._database.close()
                self._database = None


def create_ops_app(
    db: str | None = None,
    token_file: str | None = None,
    exceptions: Callable[[], Any] | None = None,
) -> Flask:
    """The ops-port application; the decisions view is on only with ``token_file``.
    ``exceptions`` gives the webhook's exceptions in force (for the overview)."""
    app = Flask(__name__)
    app.jinja_env.autoescape = True  # every template, whatever its name
    gate = TokenGate(token_file) if token_file else None
    database = _ReadOnlyDatabase(db)
    app.extensions["attest_decisions_db"] = database

    @app.after_request
    def secure(response: Response) -> Response:
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    @app.get("/metrics")
    def prometheus() -> Any:
        body, content_type = metrics.render()
        return Response(body, content_type=content_type)

    @app.get("/healthz")
    def healthz() -> Any:
        return {"status": "ok"}

    @app.get("/style.css")
    def style() -> Any:
        return Response(STYLE, content_type="text/css; charset=utf-8")

    def denied(message: str = "") -> Any:
        status = 401
        if gate is None:
            return _page(
                "error.html",
                404,
                message="The decisions view is disabled on this "
                "server (start it with --web-token-file).",
            )
        if "text/html" in request.headers.get("Accept", ""):
            response = app.make_response(_page("login.html", status, message=message))
        else:
            response = app.make_response(
                ({"error": message or "a bearer token is required"}, status)
            )
        response.headers["WWW-Authenticate"] = 'Bearer realm="attest decisions"'
        return response

    def authorised() -> bool:
        return gate is not None and gate.allows(
            request.headers.get("Authorization", ""), request.cookies.get(COOKIE, "")
        )

    @app.get("/")
    def index() -> Any:
        return redirect(url_for("overview_page"))

    @app.get("/login")
    def login_form() -> Any:
        if gate is None:
            return denied()
        return _page("login.html", 200)

    @app.post("/login")
    def login() -> Any:
        if gate is None:
            return denied()
        if not gate.check_token(request.form.get("token", "")):
            log.warning("decisions view: sign-in with a wrong token from %s", request.remote_addr)
            return denied("That token is not valid.")
        session = gate.session_value()
        response = redirect(url_for("decision_list"), code=303)
        response.set_cookie(
            COOKIE, session or "", httponly=True, secure=True, samesite="Strict", path="/"
        )
        return response

    @app.post("/logout")
    def logout() -> Any:
        response = redirect(url_for("login_form"), code=303)
        response.delete_cookie(COOKIE, path="/", secure=True, httponly=True, samesite="Strict")
        return response

    @app.get("/decisions")
    def decision_list() -> Any:
        if not authorised():
            return denied()
        try:
            form = views.parse_filters(request.args)
            before = pages.before_id(request.args.get("before", ""))
        except UsageError as err:
            values = {name: request.args.get(name, "") for name in views.FILTER_FIELDS}
            return _answer(
                "list.html", 400, {"error": str(err)}, error=str(err), values=values, rows=None
            )
        try:
            records = overview.page(database.get(), form.flt, before)
        except AttestError as err:
            return _answer(
                "list.html", 503, {"error": str(err)}, error=str(err), values=form.values, rows=None
            )
        rows = [views.summary(record) for record in records]
        older = None
        if records and len(records) == form.flt.limit:
            older = url_for("decision_list", **pages.query_args(form.values, records[-1].id))
        if pages.wants_json():
            return {"decisions": rows, "older": older}
        return _page(
            "list.html",
            200,
            values=form.values,
            rows=rows,
            limit=form.flt.limit,
            older=older,
            paged=before is not None,
        )

    @app.get("/overview")
    def overview_page() -> Any:
        if not authorised():
            return denied()
        now = dt.datetime.now(dt.UTC)
        try:
            data = pages.overview_data(
                database.get(), request.args, now, exceptions() if exceptions else None
            )
        except UsageError as err:
            return _answer("error.html", 400, {"error": str(err)}, message=str(err))
        except AttestError as err:
            return _answer("error.html", 503, {"error": str(err)}, message=str(err))
        if pages.wants_json():
            return data
        return _page("overview.html", 200, o=data, charts=pages.charts(data))

    @app.get("/images/<digest>")
    def image_page(digest: str) -> Any:
        if not authorised():
            return denied()
        try:
            data = pages.image_data(database.get(), digest, request.args)
        except UsageError as err:
            return _answer("error.html", 400, {"error": str(err)}, message=str(err))
        except AttestError as err:
            status = 404 if "not found" in str(err) else 503
            return _answer("error.html", status, {"error": str(err)}, message=str(err))
        if pages.wants_json():
            return data
        return _page("image.html", 200, i=data)

    @app.get("/decisions/<ident>")
    def decision_detail(ident: str) -> Any:
        if not authorised():
            return denied()
        try:
            record = query.get_decision(database.get(), ident)
        except UsageError as err:
            return _answer("error.html", 400, {"error": str(err)}, message=str(err))
        except AttestError as err:
            status = 404 if "not found" in str(err) else 503
            return _answer("error.html", status, {"error": str(err)}, message=str(err))
        if pages.wants_json():
            return {**views.detail(record), "input_json": None, "record": record.to_dict()}
        return _page("detail.html", 200, d=views.detail(record))

    @app.errorhandler(404)
    def not_found(_err: Any) -> Any:
        return _page("error.html", 404, message="No such page.")

    @app.errorhandler(405)
    def not_allowed(_err: Any) -> Any:
        return _page("error.html", 405, message="Method not allowed (this view is read-only).")

    return app


def _answer(template: str, status: int, data: dict[str, Any], **context: Any) -> Any:
    """JSON for ``Accept: application/json``, else the page."""
    if pages.wants_json():
        return data, status
    return _page(template, status, **context)


def _page(template: str, status: int, **context: Any) -> Any:
    context.setdefault("results", views.result_choices())
    return render_template(template, **context), status

"""The web page of the pipeline service: runs list at ``/``, one run at ``/runs/{id}``.

Plain HTML from Jinja2 templates (autoescaped) and a small vanilla script in ``static/``, all
shipped in the package; nothing is fetched from anywhere else (the pages send a
``Content-Security-Policy`` that allows only this origin). The script builds every row with
``textContent``, so a run name, a log line or a param value is always shown as text.

The page reads the ``/ui/api/...`` endpoints defined here, not ``/api/v1`` directly: they answer
what the page shows in one round trip (pipeline names joined, paging with a next-page flag) and
pass every value through :func:`raydrive.core.redaction.redact`, so a secret the store missed
still never reaches the browser. The progress stream for the page is the service's own SSE stream
(same ids, ``Last-Event-ID`` replay), with each event's data redacted on the way.
"""

from __future__ import annotations

from raydrive.service.web.router import install

__all__ = ["install", "page_url"]


def page_url(host: str, port: int) -> str:
    """The page's URL for a service bound to ``host``:``port`` (loopback for a wildcard bind)."""
    host = host.strip("[]") or "127.0.0.1"
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1"
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"

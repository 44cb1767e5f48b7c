"""An action that reads ``self.ctx.client``, and the plugin that provides it.

The model case is the reference SDK's Synapse backend client, built from the job's
``SYNAPSE_HOST`` and ``SYNAPSE_ACCESS_TOKEN``. The module is both: registered as a plugin (the
``raydrive_context_client`` hookimpl below) and imported for its action. The Ray test copies it
into a working dir with a dist-info naming it in the ``raydrive.plugins`` entry-point group, so
the worker's plugin manager loads it as any installed plugin.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from pydantic import BaseModel

from raydrive import BaseAction, hookimpl


class BackendClient:
    """What the plugin gives an action: the reference's Synapse ``BackendClient`` in small."""

    def __init__(self, base_url: str, access_token: str) -> None:
        self.base_url = base_url.rstrip("/")
        self._access_token = access_token

    def headers(self) -> dict[str, str]:
        return {"SYNAPSE-Access-Token": f"Token {self._access_token}"}

    def __repr__(self) -> str:
        return f"BackendClient({self.base_url!r})"


@hookimpl
def raydrive_context_client(env: Mapping[str, str]) -> BackendClient | None:
    host, token = env.get("SYNAPSE_HOST"), env.get("SYNAPSE_ACCESS_TOKEN")
    if not host or not token:
        return None  # not a Synapse job: leave it to another plugin
    return BackendClient(host, token)


class ClientParams(BaseModel):
    reads: int = 2


class ClientAction(BaseAction[ClientParams]):
    def execute(self) -> dict[str, object]:
        clients = [self.ctx.client for _ in range(self.params.reads)]
        client = clients[0]
        expected = f"Token {self.ctx.env['SYNAPSE_ACCESS_TOKEN']}"
        return {
            "client": type(client).__name__,
            "base_url": client.base_url,
            "same_each_read": all(c is client for c in clients),
            "authenticates": client.headers()["SYNAPSE-Access-Token"] == expected,
            "pid": os.getpid(),
        }

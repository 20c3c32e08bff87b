"""The peer benchmark's load: one wrk script shape for both systems, one request kind each,
a fresh recipient per request (and, for the gateway, a fresh Idempotency-Key). The script's
`done` prints the same BENCHJSON line as bench.common's, so the figures read the same way.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import quote

from bench import common
from bench.common import LoadResult

RECIPIENT = "33600000000"  # digits replaced in each request by the request's own recipient


def lua(method: str, path: str, headers: Mapping[str, str], body: str, slot: int) -> str:
    """A script whose every request replaces RECIPIENT (in the path or the body) with
    `336`, a two-digit `slot` for this run and a six-digit counter."""
    where = "body" if RECIPIENT in body else "path"
    template = body if where == "body" else path
    head, tail = template.split(RECIPIENT)
    lua_headers = ", ".join(
        f"[ {common._lua_string(k)} ] = {common._lua_string(v)}" for k, v in sorted(headers.items())
    )
    keyed = "Idempotency-Key" if "Content-Type" in headers else None
    return (
        f"""
local counter = 0
function request()
  counter = counter + 1
  local h = {{{lua_headers}}}
  {f'h["{keyed}"] = "peer-{slot:02d}-" .. counter' if keyed else ""}
  local filled = {common._lua_string(head)} .. string.format("336{slot:02d}%06d", counter)
    .. {common._lua_string(tail)}
  if {common._lua_string(where)} == "body" then
    return wrk.format({common._lua_string(method)}, {common._lua_string(path)}, h, filled)
  end
  return wrk.format({common._lua_string(method)}, filled, h, {common._lua_string(body)})
end
"""
        + common._WRK_DONE
    )


def gateway_script(api_key: str, slot: int) -> str:
    payload = json.dumps(common.sms_payload("+" + RECIPIENT))
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {api_key}"}
    return lua("POST", "/api/channels/sms/send", headers, payload, slot)


def jasmin_script(username: str, password: str, slot: int) -> str:
    query = (
        f"username={quote(username)}&password={quote(password)}&to={RECIPIENT}"
        f"&content={quote(common.SMS_BODY)}"
    )
    return lua("GET", "/send?" + query, {}, "", slot)


def run(url: str, script: str, *, seconds: float, connections: int, workdir: Path) -> LoadResult:
    """wrk -t1 on the load cores for `seconds` with `connections` connections."""
    return common.run_wrk_script(
        url, script, seconds=seconds, connections=connections, workdir=workdir
    )

"""The ceiling: a bare Starlette endpoint that parses a JSON POST and answers 202 with a small
JSON body, served by uvicorn exactly as `gateway serve` serves the gateway (same
`uvicorn.run` arguments, so the same loop, HTTP parser and single process).

    .venv/bin/python -m bench.ceiling --port 8799
"""

from __future__ import annotations

import argparse

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.http_server import server_options


async def accept(request: Request) -> Response:
    data = await request.json()
    return JSONResponse({"status": "queued", "to": data.get("to")}, status_code=202)


async def root(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


app = Starlette(routes=[Route("/", root), Route("/ceiling", accept, methods=["POST"])])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    # the arguments gateway/cli.py `_serve` passes
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=30,
        **server_options(),
    )


if __name__ == "__main__":
    main()

"""The console's forms are `application/x-www-form-urlencoded` (what browsers and htmx post);
read with the standard library, as the Twilio webhooks are, rather than with a multipart
parser the console does not need."""

from __future__ import annotations

from urllib.parse import parse_qsl

from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request

from gateway.errors import UnsupportedMediaType

FORM_TYPE = "application/x-www-form-urlencoded"


def parse_form(body: bytes) -> FormData:
    pairs: list[tuple[str, str | UploadFile]] = list(
        parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
    )
    return FormData(pairs)


async def read_form(request: Request) -> FormData:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != FORM_TYPE:
        raise UnsupportedMediaType(
            f"Expected Content-Type {FORM_TYPE}, got {content_type or 'none'!r}",
            code="unsupported_media_type",
        )
    return parse_form(await request.body())

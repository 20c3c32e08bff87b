"""`gateway serve | migrate | export | import | tenant create|list | keys create|revoke |
keyring | rotate-keys | sandbox | demo | cron | assistant sync`.

Every failure ends the command with one line on stderr: exit code 2 for a configuration error
(a malformed setting, keys that cannot read the stored credentials), 1 for anything else.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import importlib.util
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from gateway import migrations
from gateway.config import Settings, load_settings
from gateway.crypto import DecryptionError, Keyring, fingerprint_id
from gateway.domain.key_scopes import ALL_SCOPES, KeyScope
from gateway.errors import ApiError, ConfigError, ValidationFailed
from gateway.logs import configure_logging
from gateway.services import tenants as tenant_service
from gateway.services.rollup_job import RollupJob
from gateway.settings_model import reveal
from gateway.store import channels as channel_store
from gateway.store import tenants as tenant_store
from gateway.store.engine import DatabaseError, Engine
from gateway.store.tenant_scope import TenantDB


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gateway", description="Channel Gateway")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--env", help="environment from [env.<name>] (or GATEWAY_ENV)")
    common.add_argument("--config", help="path to wrangler_like.toml (or GATEWAY_CONFIG)")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", parents=[common], help="run the HTTP server")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8787)

    sandbox = sub.add_parser(
        "sandbox", parents=[common], help="run the provider emulators for local development"
    )
    sandbox.add_argument("--host", default="127.0.0.1")
    sandbox.add_argument("--base-port", type=int, default=8788)
    sandbox.add_argument(
        "--whatsapp",
        action="append",
        default=[],
        metavar="PHONE_NUMBER_ID=TENANT_SLUG",
        help="send this WhatsApp number's webhooks to the tenant's webhook URL (repeatable)",
    )
    sandbox.add_argument(
        "--print-settings",
        action="store_true",
        help="print the settings block for .dev.vars and exit without serving",
    )

    demo = sub.add_parser(
        "demo",
        help="play a forwarded call, a booking and its SMS against the emulators",
    )
    demo.add_argument(
        "--callback-delay",
        type=float,
        default=0.3,
        help="seconds the Twilio emulator waits between status callbacks (default 0.3)",
    )

    sub.add_parser("migrate", parents=[common], help="apply pending migrations")
    export = sub.add_parser(
        "export", parents=[common], help="write every table of the database to one file"
    )
    export.add_argument("file", help="the file to write (JSON lines)")
    load = sub.add_parser(
        "import", parents=[common], help="load a `gateway export` file into an empty database"
    )
    load.add_argument("file", help="a file written by `gateway export`")
    sub.add_parser(
        "cron", parents=[common], help="run one scheduled tick by hand (reminders that are due)"
    )
    sub.add_parser(
        "rollups",
        parents=[common],
        help="bring the analytics rollups up to date now (the server does it every minute)",
    )
    sub.add_parser("rotate-keys", parents=[common], help="re-encrypt secrets under the primary key")
    keyring = sub.add_parser(
        "keyring", parents=[common], help="the encryption keys: show, add a new one, prune"
    )
    keyring.add_argument(
        "action",
        nargs="?",
        choices=("show", "add", "prune"),
        default="show",
        help="show the key ids (default); add: print ENCRYPTION_KEYS with a new primary key "
        "in front; prune: print ENCRYPTION_KEYS without the keys no stored secret uses",
    )

    tenant = sub.add_parser("tenant", help="manage tenants").add_subparsers(
        dest="action", required=True
    )
    create = tenant.add_parser("create", parents=[common], help="create a tenant")
    create.add_argument("--name", required=True)
    create.add_argument("--slug", required=True)
    create.add_argument("--timezone", default="Europe/Paris")
    create.add_argument(
        "--country", help="ISO 3166-1 alpha-2 country its national phone numbers are read in"
    )
    tenant.add_parser("list", parents=[common], help="list tenants")

    assistant = sub.add_parser("assistant", help="the tenants' Vapi assistants").add_subparsers(
        dest="action", required=True
    )
    assistant_sync = assistant.add_parser(
        "sync", parents=[common], help="create or update a tenant's Vapi assistant"
    )
    assistant_sync.add_argument("--tenant", required=True, help="tenant id or slug")

    keys = sub.add_parser("keys", help="manage tenant API keys").add_subparsers(
        dest="action", required=True
    )
    key_create = keys.add_parser("create", parents=[common], help="issue an API key")
    key_create.add_argument("--tenant", required=True, help="tenant id or slug")
    key_create.add_argument("--label")
    key_create.add_argument(
        "--scopes",
        type=_scopes,
        default=ALL_SCOPES,
        help="what the key may do, comma-separated: read, send, config (default: all three)",
    )
    key_revoke = keys.add_parser("revoke", parents=[common], help="revoke an API key")
    key_revoke.add_argument("--tenant", required=True, help="tenant id or slug")
    key_revoke.add_argument("--key-id", required=True)
    return parser


def _scopes(text: str) -> tuple[KeyScope, ...]:
    """`read,send` -> the scopes, in their canonical order; an unknown or empty one is an
    argument error (exit 2, argparse's message)."""
    named = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [name for name in named if name not in ALL_SCOPES]
    if unknown or not named:
        problem = f"unknown scope {', '.join(unknown)!r}" if unknown else "no scope named"
        raise argparse.ArgumentTypeError(f"{problem} (choose from {', '.join(ALL_SCOPES)})")
    return tuple(scope for scope in ALL_SCOPES if scope in named)


def _print(data: Any) -> None:
    print(json.dumps(data, indent=2))


async def _with_db(settings: Settings, fn: Callable[[Engine], Awaitable[Any]]) -> Any:
    from gateway.wiring import open_database

    migrations.migrate(settings)
    db = open_database(settings, 1)
    db.start()
    try:
        await tenant_service.check_keyring(db, settings.keyring)
        await _check_keys_open_secrets(db, settings)
        return await fn(db)
    finally:
        await db.close()


async def _check_keys_open_secrets(db: Engine, settings: Settings) -> None:
    """Each key id in use must open one of the secrets stored under it, so that a key with the
    right id but the wrong bytes stops the command here instead of failing every send."""
    from gateway.services.channel_config import ChannelConfigService

    service = ChannelConfigService(settings)
    rows: dict[str, list[tuple[str, str]]] = {}
    for row in await channel_store.encrypted_rows(db):
        rows.setdefault(row["key_id"], []).append((row["tenant_id"], row["channel_type"]))
    for key_id, channels in sorted(rows.items()):
        for tenant_id, channel in channels[:5]:  # one corrupt row does not condemn a key
            try:
                await service.load(TenantDB(db, tenant_id), channel)
            except ApiError:
                continue
            break
        else:
            raise ConfigError(
                f"the key {key_id!r} of ENCRYPTION_KEY(S) cannot decrypt the credentials "
                "stored under it: it is not the key they were encrypted with"
            )


async def _nothing(db: Engine) -> None:
    return None


def _preflight(settings: Settings) -> None:
    """The start-up checks of the app's lifespan (migrations, keys), made before it starts:
    inside uvicorn's lifespan a wrong key would end as a traceback instead of one line."""
    asyncio.run(_with_db(settings, _nothing))


def _serve(settings: Settings, host: str, port: int) -> None:
    import uvicorn

    from gateway.app import create_app

    _preflight(settings)
    app = create_app(settings)
    # a SQLite file is served by one process: refuse here in one line, not in the lifespan
    app.state.gateway.hold_database()
    print(f"gateway: listening on http://{host}:{port} (env {settings.env})", file=sys.stderr)
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=30,
        **app.state.uvicorn_options,
    )


async def _cron_tick(settings: Settings) -> Any:
    """One tick with the gateway's own services; the messages it accepts are sent by the
    running server's dispatcher (or by the next one to start). Asked for by an operator, it
    runs whatever the instances' schedulers claimed: the reminders it sends are claimed one
    by one, so a scheduled tick running at the same time sends none of them twice."""
    from gateway.wiring import Gateway

    gateway = Gateway(settings)
    gateway.run_dispatcher = False
    await gateway.start()
    try:
        return await gateway.cron_tick()
    finally:
        await gateway.stop()


async def _assistant_sync(settings: Settings, tenant_ref: str) -> Any:
    from gateway.services.provisioning import sync_assistant
    from gateway.wiring import Gateway

    gateway = Gateway(settings)
    gateway.run_dispatcher = False
    await gateway.start()
    try:
        tenant = await tenant_service.require_tenant(gateway.db, tenant_ref)
        return await sync_assistant(tenant, settings, gateway.channels, gateway.voice)
    finally:
        await gateway.stop()


def _tenant_create(args: argparse.Namespace) -> Callable[[Engine], Awaitable[Any]]:
    from gateway.routes.admin import TenantCreate
    from gateway.validation import validate_model

    # The request model of POST /admin/tenants: both refuse the same values.
    fields = {"name": args.name, "slug": args.slug, "timezone": args.timezone}
    if args.country is not None:
        fields["country"] = args.country
    body = validate_model(TenantCreate, fields)

    async def run(db: Engine) -> Any:
        tenant, key = await tenant_service.create_tenant(
            db, body.name, body.slug, body.timezone, country=body.country
        )
        return {"tenant": tenant.public(), "api_key": key["key"], "api_key_id": key["id"]}

    return run


def _keyring_entries(settings: Settings) -> list[tuple[str, str]]:
    """The configured keys as (id, key as written), primary first."""
    keys = reveal(settings.typed.encryption_keys)
    if keys:
        return [
            (key_id.strip(), raw.strip())
            for key_id, _, raw in (item.strip().partition(":") for item in keys.split(","))
        ]
    from gateway.crypto import decode_key

    raw = reveal(settings.typed.encryption_key)
    if raw is None:  # load_settings refuses settings without either
        raise ConfigError("ENCRYPTION_KEY or ENCRYPTION_KEYS must be set")
    return [(fingerprint_id(decode_key(raw, "ENCRYPTION_KEY")), raw.strip())]


def _keys_line(entries: list[tuple[str, str]]) -> str:
    return "ENCRYPTION_KEYS=" + ",".join(f"{key_id}:{raw}" for key_id, raw in entries)


async def _keys_in_use(db: Engine) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in await channel_store.encrypted_rows(db):
        counts[row["key_id"]] = counts.get(row["key_id"], 0) + 1
    return counts


def _keyring(settings: Settings, action: str) -> None:
    import base64
    import secrets

    entries = _keyring_entries(settings)
    if action == "add":
        new = secrets.token_bytes(32)
        new_id = fingerprint_id(new)
        print(_keys_line([(new_id, base64.b64encode(new).decode()), *entries]))
        print(
            f"gateway: new primary key {new_id} in front of "
            + ", ".join(key_id for key_id, _ in entries)
            + ". Put the line where the secrets live (appended to .dev.vars, it wins over "
            "ENCRYPTION_KEY), then run `gateway rotate-keys`.",
            file=sys.stderr,
        )
        return
    in_use = asyncio.run(_with_db(settings, _keys_in_use))
    keyring: Keyring = settings.keyring
    if action == "show":
        _print({"primary": keyring.primary_id, "keys": keyring.key_ids, "in_use": in_use})
        return
    kept = [(k, raw) for k, raw in entries if k == keyring.primary_id or k in in_use]
    dropped = [k for k, _ in entries if k not in dict(kept)]
    waiting = [k for k, _ in kept if k != keyring.primary_id]
    print(_keys_line(kept))
    note = f"dropped {', '.join(dropped)}" if dropped else "no key to drop"
    if waiting:
        note += f"; {', '.join(waiting)} still encrypt secrets: run `gateway rotate-keys` first"
    print(f"gateway: {note}.", file=sys.stderr)


def _transfer(settings: Settings, command: str, path: Path) -> int:
    """`gateway export FILE` and `gateway import FILE` on the database the settings select
    (the work is `gateway.store.transfer`'s)."""
    from gateway.store import transfer
    from gateway.wiring import open_database

    directory = settings.migrations_dir
    if settings.database_url:
        directory = migrations.postgres_directory(directory)
    expected = [m.name for m in migrations.discover(directory)]

    async def run() -> tuple[transfer.Summary, dict[str, int]]:
        db = open_database(settings, 1)
        db.start()
        try:
            if command == "export":
                summary = await transfer.export_file(db, path, expected)
            else:
                summary = await transfer.import_file(db, path, expected)
            return summary, await _keys_in_use(db)
        finally:
            await db.close()

    try:
        summary, keys = asyncio.run(run())
    except transfer.TransferError as exc:
        print(f"gateway: {command} refused, nothing written: {exc}", file=sys.stderr)
        return 1
    where = "PostgreSQL (DATABASE_URL)" if settings.database_url else str(settings.database_path)
    done = "exported" if command == "export" else "imported"
    way = f"from {where} to {path}" if command == "export" else f"from {path} into {where}"
    print(
        f"{done} {summary.total} rows of {len(summary.rows)} tables "
        f"(schema {summary.schema_version}) {way}"
    )
    key_ids = ", ".join(sorted(keys)) or "none"
    if command == "export":
        print(
            "gateway: the channel credentials are in the file encrypted, as stored (key ids "
            f"{key_ids}): the gateway that imports it needs the same ENCRYPTION_KEY(S). Keep "
            "the file private: it also holds API key hashes and the tenants' data.",
            file=sys.stderr,
        )
        return 0
    missing = sorted(set(keys) - set(settings.keyring.key_ids))
    if missing:
        print(
            "gateway: the imported credentials are encrypted with key id(s) "
            f"{', '.join(missing)}, which ENCRYPTION_KEY(S) here does not hold: set the "
            "source gateway's ENCRYPTION_KEY(S) before `gateway serve`.",
            file=sys.stderr,
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command in ("sandbox", "demo") and _emulators_missing(args.command):
        print(
            f"gateway: {args.command} runs the provider emulators, development tooling that "
            "is not installed here: from a checkout of the project, pip install -e '.[sandbox]'",
            file=sys.stderr,
        )
        return 2
    if args.command == "demo":
        # Nothing of the project is read or written: the demo brings its own settings.
        configure_logging("WARNING")
        return _one_line_errors(lambda: _demo(args))
    try:
        settings = load_settings(args.config, args.env, generate_missing=True)
    except ConfigError as exc:
        print(f"gateway: configuration error: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.typed.log_level)
    if settings.generated:
        generated = [
            f"{name} (key id {settings.keyring.primary_id})" if name == "ENCRYPTION_KEY" else name
            for name in settings.generated
        ]
        print(
            "gateway: generated "
            + " and ".join(generated)
            + f" into {settings.root / '.dev.vars'} (git-ignored). Keep that file: without "
            "ENCRYPTION_KEY the stored credentials cannot be read.",
            file=sys.stderr,
        )
    return _one_line_errors(lambda: _dispatch(args, settings))


def _emulators_missing(command: str) -> bool:
    """Whether the emulators are absent: they are not in the wheel (an editable install of a
    checkout has them), and `sandbox` also needs aiosmtpd, the `sandbox` extra."""
    try:
        if command == "sandbox":
            importlib.import_module("gateway.sandbox.runner")
        return importlib.util.find_spec("gateway.sandbox") is None
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if missing.partition(".")[0] == "aiosmtpd" or missing.startswith("gateway.sandbox"):
            return True
        raise


def _one_line_errors(command: Callable[[], int]) -> int:
    """Run a command; whatever stops it is reported in one line, never a traceback."""
    try:
        return command()
    except ConfigError as exc:
        print(f"gateway: configuration error: {exc}", file=sys.stderr)
        return 2
    except DecryptionError as exc:
        print(f"gateway: configuration error: stored credentials: {exc}", file=sys.stderr)
        return 2
    except migrations.MigrationError as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return 1
    except ValidationFailed as exc:
        fields = exc.details.get("fields", [])
        print(
            "gateway: " + "; ".join(f"{f['field']} {f['message']}" for f in fields), file=sys.stderr
        )
        return 1
    except ApiError as exc:
        print(f"gateway: {exc.message}", file=sys.stderr)
        return 1
    except (ValueError, OSError, DatabaseError) as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return 1


def _demo(args: argparse.Namespace) -> int:
    import httpx

    from gateway.demo import DemoError, run_demo

    try:
        with contextlib.suppress(KeyboardInterrupt):
            run_demo(sys.stdout, callback_delay=args.callback_delay)
    except (DemoError, RuntimeError, httpx.HTTPError) as exc:  # a step, a server, a socket
        print(f"gateway: demo failed: {exc}", file=sys.stderr)
        return 1
    return 0


def _sandbox(settings: Settings, args: argparse.Namespace) -> None:
    from gateway.sandbox import runner

    typed = settings.typed
    config = runner.SandboxConfig(
        host=args.host,
        base_port=args.base_port,
        gateway_url=settings.public_base_url,
        state_dir=settings.root / ".state",
        account_sid=typed.twilio_account_sid or runner.ACCOUNT_SID,
        auth_token=reveal(typed.twilio_auth_token) or runner.AUTH_TOKEN,
        phone_number=typed.twilio_phone_number or runner.PHONE_NUMBER,
        vapi_api_key=reveal(typed.vapi_api_key) or runner.VAPI_API_KEY,
        vapi_webhook_secret=reveal(typed.vapi_webhook_secret) or runner.VAPI_WEBHOOK_SECRET,
        whatsapp_numbers=runner.parse_whatsapp_numbers(args.whatsapp),
    )
    if args.print_settings:
        print(runner.settings_block(config))
        return
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(runner.serve(config))


def _dispatch(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "serve":
        _serve(settings, args.host, args.port)
    elif args.command == "sandbox":
        _sandbox(settings, args)
    elif args.command == "keyring":
        _keyring(settings, args.action)
    elif args.command == "assistant":
        _preflight(settings)
        _print(asyncio.run(_assistant_sync(settings, args.tenant)))
    elif args.command == "cron":
        _preflight(settings)
        _print(asyncio.run(_cron_tick(settings)))
    elif args.command == "rollups":
        _preflight(settings)
        steps = asyncio.run(_with_db(settings, lambda db: RollupJob(db).catch_up()))
        print(f"analytics rollups up to date ({steps} step(s))")
    elif args.command in ("export", "import"):
        return _transfer(settings, args.command, Path(args.file))
    elif args.command == "migrate":
        applied = migrations.migrate(settings)
        print(
            f"applied {len(applied)} migration(s): {', '.join(applied)}"
            if applied
            else "no pending migrations"
        )
    elif args.command == "rotate-keys":
        count = asyncio.run(
            _with_db(settings, lambda db: tenant_service.rotate_keys(db, settings.keyring))
        )
        print(
            f"re-encrypted {count} channel configuration(s) under key {settings.keyring.primary_id}"
        )
    elif args.command == "tenant" and args.action == "create":
        _print(asyncio.run(_with_db(settings, _tenant_create(args))))
    elif args.command == "tenant" and args.action == "list":

        async def list_all(db: Engine) -> Any:
            return [t.public() for t in await tenant_store.list_tenants(db, 10_000, None)]

        _print(asyncio.run(_with_db(settings, list_all)))
    elif args.command == "keys" and args.action == "create":

        async def create_key(db: Engine) -> Any:
            tenant = await tenant_service.require_tenant(db, args.tenant)
            return await tenant_service.create_api_key(db, tenant.id, args.label, args.scopes)

        _print(asyncio.run(_with_db(settings, create_key)))
    elif args.command == "keys" and args.action == "revoke":

        async def revoke(db: Engine) -> Any:
            tenant = await tenant_service.require_tenant(db, args.tenant)
            await tenant_service.revoke_api_key(db, tenant.id, args.key_id)
            return {"revoked": args.key_id}

        _print(asyncio.run(_with_db(settings, revoke)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

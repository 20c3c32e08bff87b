"""`gateway serve | migrate | tenant create|list | keys create|revoke | rotate-keys`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from gateway import migrations
from gateway.config import Settings, load_settings
from gateway.db import Database
from gateway.errors import ApiError, ConfigError
from gateway.logs import configure_logging
from gateway.services import tenants as tenant_service
from gateway.store import tenants as tenant_store


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

    sub.add_parser("migrate", parents=[common], help="apply pending migrations")
    sub.add_parser(
        "cron", parents=[common], help="run one scheduled tick by hand (reminders that are due)"
    )
    sub.add_parser("rotate-keys", parents=[common], help="re-encrypt secrets under the primary key")

    tenant = sub.add_parser("tenant", help="manage tenants").add_subparsers(
        dest="action", required=True
    )
    create = tenant.add_parser("create", parents=[common], help="create a tenant")
    create.add_argument("--name", required=True)
    create.add_argument("--slug", required=True)
    create.add_argument("--timezone", default="Europe/Paris")
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
    key_revoke = keys.add_parser("revoke", parents=[common], help="revoke an API key")
    key_revoke.add_argument("--tenant", required=True, help="tenant id or slug")
    key_revoke.add_argument("--key-id", required=True)
    return parser


def _print(data: Any) -> None:
    print(json.dumps(data, indent=2))


async def _with_db(settings: Settings, fn: Callable[[Database], Awaitable[Any]]) -> Any:
    migrations.apply_migrations(
        settings.database_path, settings.migrations_dir, settings.migrations_table
    )
    db = Database(settings.database_path, 1)
    db.start()
    try:
        await tenant_service.check_keyring(db, settings.keyring)
        return await fn(db)
    finally:
        await db.close()


def _serve(settings: Settings, host: str, port: int) -> None:
    import uvicorn

    from gateway.app import create_app

    app = create_app(settings)
    print(f"gateway: listening on http://{host}:{port} (env {settings.env})", file=sys.stderr)
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=30,
    )


async def _cron_tick(settings: Settings) -> Any:
    """One tick with the gateway's own services; the messages it accepts are sent by the
    running server's dispatcher (or by the next one to start)."""
    from gateway.app import Gateway

    gateway = Gateway(settings, [])
    gateway.run_dispatcher = False
    await gateway.start()
    try:
        return await gateway.cron_tick()
    finally:
        await gateway.stop()


async def _assistant_sync(settings: Settings, tenant_ref: str) -> Any:
    from gateway.app import Gateway
    from gateway.services.provisioning import sync_assistant

    gateway = Gateway(settings, [])
    gateway.run_dispatcher = False
    await gateway.start()
    try:
        tenant = await tenant_service.require_tenant(gateway.db, tenant_ref)
        return await sync_assistant(tenant, settings, gateway.channels, gateway.voice)
    finally:
        await gateway.stop()


def _tenant_create(args: argparse.Namespace) -> Callable[[Database], Awaitable[Any]]:
    async def run(db: Database) -> Any:
        from gateway.channel_models import _timezone
        from gateway.validation import Slug  # noqa: F401  (documents the slug rule)

        _timezone(args.timezone)
        tenant, key = await tenant_service.create_tenant(db, args.name, args.slug, args.timezone)
        return {"tenant": tenant.public(), "api_key": key["key"], "api_key_id": key["id"]}

    return run


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings(args.config, args.env, generate_missing=True)
    except ConfigError as exc:
        print(f"gateway: configuration error: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.get("LOG_LEVEL", "INFO") or "INFO")
    if settings.generated:
        print(
            "gateway: generated "
            + " and ".join(settings.generated)
            + f" into {settings.root / '.dev.vars'} (git-ignored). Keep that file: without "
            "ENCRYPTION_KEY the stored credentials cannot be read.",
            file=sys.stderr,
        )
    try:
        return _dispatch(args, settings)
    except ConfigError as exc:
        print(f"gateway: configuration error: {exc}", file=sys.stderr)
        return 2
    except migrations.MigrationError as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return 1
    except ApiError as exc:
        print(f"gateway: {exc.message}", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return 1


def _dispatch(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "serve":
        _serve(settings, args.host, args.port)
    elif args.command == "sandbox":
        from gateway.sandbox.runner import serve

        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(
                serve(
                    args.host,
                    args.base_port,
                    settings.public_base_url,
                    settings.get("TWILIO_ACCOUNT_SID"),
                    settings.get("TWILIO_AUTH_TOKEN"),
                )
            )
    elif args.command == "assistant":
        _print(asyncio.run(_assistant_sync(settings, args.tenant)))
    elif args.command == "cron":
        _print(asyncio.run(_cron_tick(settings)))
    elif args.command == "migrate":
        applied = migrations.apply_migrations(
            settings.database_path, settings.migrations_dir, settings.migrations_table
        )
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

        async def list_all(db: Database) -> Any:
            return [t.public() for t in await tenant_store.list_tenants(db, 10_000, None)]

        _print(asyncio.run(_with_db(settings, list_all)))
    elif args.command == "keys" and args.action == "create":

        async def create_key(db: Database) -> Any:
            tenant = await tenant_service.require_tenant(db, args.tenant)
            return await tenant_service.create_api_key(db, tenant.id, args.label)

        _print(asyncio.run(_with_db(settings, create_key)))
    elif args.command == "keys" and args.action == "revoke":

        async def revoke(db: Database) -> Any:
            tenant = await tenant_service.require_tenant(db, args.tenant)
            await tenant_service.revoke_api_key(db, tenant.id, args.key_id)
            return {"revoked": args.key_id}

        _print(asyncio.run(_with_db(settings, revoke)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``gpsfleet token``: create (the token is printed once, alone on the last line), list, revoke."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime

from api.auth import ALL_ROLES, TokenError, TokenInfo, create_token, list_tokens, revoke_token
from app.context import add_db_argument, database_or_exit, settings_from


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("token", help="create, list and revoke API bearer tokens")
    actions = parser.add_subparsers(dest="token_action", metavar="ACTION", required=True)

    create = actions.add_parser(
        "create",
        help="create a token; it is printed once, alone on the last line",
        description="Create an API token. Only its hash is stored: copy it now, it cannot be shown again.",
    )
    create.add_argument("--role", required=True, choices=sorted(ALL_ROLES), help="what the token may do")
    create.add_argument("--customer", type=int, metavar="ID", help="the customer a customer token sees")
    create.add_argument("--name", default="", help="who or what uses the token (shown in lists)")
    add_db_argument(create)
    create.set_defaults(handler=handle_create)

    listing = actions.add_parser("list", help="list tokens (never their secrets)")
    listing.add_argument("--active", action="store_true", help="leave revoked tokens out")
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_db_argument(listing)
    listing.set_defaults(handler=handle_list)

    revoke = actions.add_parser("revoke", help="revoke a token at once")
    revoke.add_argument("token_id", type=int, metavar="ID", help="the token's id (see token list)")
    add_db_argument(revoke)
    revoke.set_defaults(handler=handle_revoke)


def handle_create(args: argparse.Namespace) -> int:
    database = database_or_exit(settings_from(args))
    try:
        new = create_token(database.engine, role=args.role, customer_id=args.customer, name=args.name)
    except TokenError as exc:
        hint = "; pass --customer ID" if args.role == "customer" and args.customer is None else ""
        print(f"gpsfleet: {exc}{hint}", file=sys.stderr)
        return 2
    finally:
        database.dispose()
    scope = f", customer {new.info.customer_id}" if new.info.customer_id is not None else ""
    print(
        f"created token {new.info.id} ({new.info.role}{scope}, {new.info.name!r}); "
        "it is shown only now, store it:",
        file=sys.stderr,
    )
    print(new.token)
    return 0


def handle_list(args: argparse.Namespace) -> int:
    database = database_or_exit(settings_from(args))
    try:
        tokens = list_tokens(database.engine, include_revoked=not args.active)
    finally:
        database.dispose()
    if args.json:
        print(json.dumps([_as_json(info) for info in tokens], indent=2))
        return 0
    rows = [["ID", "ROLE", "CUSTOMER", "NAME", "PREFIX", "CREATED", "LAST USED", "REVOKED"]]
    rows += [
        [
            str(info.id),
            info.role,
            "" if info.customer_id is None else str(info.customer_id),
            info.name,
            info.token_prefix + "…",
            _time(info.created_at),
            _time(info.last_used_at),
            _time(info.revoked_at),
        ]
        for info in tokens
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    return 0


def handle_revoke(args: argparse.Namespace) -> int:
    database = database_or_exit(settings_from(args))
    try:
        info = revoke_token(database.engine, args.token_id)
    except TokenError as exc:
        print(f"gpsfleet: {exc}", file=sys.stderr)
        return 1
    finally:
        database.dispose()
    print(f"token {info.id} ({info.role}, {info.name!r}) revoked at {_time(info.revoked_at)}")
    return 0


def _as_json(info: TokenInfo) -> dict[str, object]:
    return {
        "id": info.id,
        "role": info.role,
        "customer_id": info.customer_id,
        "name": info.name,
        "token_prefix": info.token_prefix,
        "created_at": info.created_at.isoformat(),
        "last_used_at": info.last_used_at.isoformat() if info.last_used_at else None,
        "revoked_at": info.revoked_at.isoformat() if info.revoked_at else None,
        "active": info.active,
    }


def _time(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%SZ") if value else "-"

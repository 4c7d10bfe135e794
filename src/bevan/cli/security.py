"""The `bevan user` and `bevan client` commands: accounts and OAuth clients."""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import TYPE_CHECKING, Any

from bevan.cli.options import data_options, open_store, settings_from

if TYPE_CHECKING:
    from bevan.security.oauth_clients import ClientRegistry
    from bevan.security.users import UserDirectory


def _directory(args: argparse.Namespace) -> tuple[UserDirectory, ClientRegistry]:
    from bevan.security.oauth_clients import ClientRegistry
    from bevan.security.users import UserDirectory

    store = open_store(settings_from(args))
    return UserDirectory.on(store.engine), ClientRegistry.on(store.engine)


def _read_password(args: argparse.Namespace) -> str | None:
    if args.password_stdin:
        line = sys.stdin.readline().rstrip("\r\n")
        return line or None
    if not sys.stdin.isatty():
        return None
    first = getpass.getpass("Password: ")
    second = getpass.getpass("Password again: ")
    if first != second:
        raise ValueError("the passwords differ")
    return first


def cmd_user_add(args: argparse.Namespace) -> int:
    from bevan.security.users import SERVICE_ROLES, UserError

    users, _ = _directory(args)
    password = None
    if args.role not in SERVICE_ROLES:
        try:
            password = _read_password(args)
        except ValueError as error:
            print(f"bevan user add: {error}", file=sys.stderr)
            return 2
    try:
        user = users.add(
            args.username,
            args.role,
            password=password,
            organisation=args.organisation,
            patient_id=args.patient,
            device_id=args.device,
            display_name=args.name,
        )
    except UserError as error:
        print(f"bevan user add: {error}", file=sys.stderr)
        return 2
    print(f"added {user.role} {user.username} (id {user.id})")
    return 0


def cmd_user_list(args: argparse.Namespace) -> int:
    users, _ = _directory(args)
    rows = [
        (
            u.username,
            u.role,
            u.organisation or "-",
            u.patient_id or "-",
            u.device_id or "-",
            "disabled" if u.disabled else "active",
            u.display_name or "",
        )
        for u in users.list()
    ]
    _table(("USERNAME", "ROLE", "ORGANISATION", "PATIENT", "DEVICE", "STATUS", "NAME"), rows)
    return 0


def cmd_user_disable(args: argparse.Namespace) -> int:
    users, _ = _directory(args)
    if not users.disable(args.username):
        print(f"bevan user disable: there is no user {args.username!r}", file=sys.stderr)
        return 2
    print(f"disabled {args.username}: it can no longer sign in or refresh tokens")
    return 0


def cmd_client_add(args: argparse.Namespace) -> int:
    from bevan.security.oauth_clients import ClientError

    users, clients = _directory(args)
    user = None
    if args.user:
        user = users.by_username(args.user)
        if user is None:
            print(f"bevan client add: there is no user {args.user!r}", file=sys.stderr)
            return 2
    try:
        client, secret = clients.register(
            args.name,
            redirect_uris=args.redirect_uri,
            public=args.public,
            user=user,
            scope=args.scope,
        )
    except ClientError as error:
        print(f"bevan client add: {error}", file=sys.stderr)
        return 2
    print(f"client_id: {client.client_id}")
    if secret:
        print(f"client_secret: {secret}")
        print("# the secret is shown only now; keep it somewhere safe", file=sys.stderr)
    return 0


def cmd_client_list(args: argparse.Namespace) -> int:
    _, clients = _directory(args)
    rows = [
        (
            c.client_id,
            c.name,
            "public" if c.public else "confidential",
            ",".join(c.grant_types),
            "disabled" if c.disabled else "active",
        )
        for c in clients.list()
    ]
    _table(("CLIENT_ID", "NAME", "TYPE", "GRANTS", "STATUS"), rows)
    return 0


def _table(header: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


def register(commands: Any) -> None:
    """Add the `user` and `client` commands to the `bevan` subcommand parsers."""
    from bevan.security.tokens import ROLES

    user = commands.add_parser("user", help="user accounts")
    user_commands = user.add_subparsers(dest="user_command", required=True)

    add = user_commands.add_parser(
        "add", help="add an account (asks for the password twice unless --password-stdin)"
    )
    data_options(add)
    add.add_argument("--username", required=True)
    add.add_argument("--role", required=True, choices=ROLES)
    add.add_argument("--organisation", help="ODS code of the organisation (staff)")
    add.add_argument("--patient", help="id of the Patient (patient and device accounts)")
    add.add_argument("--device", help="id of the Device (device accounts)")
    add.add_argument("--name", help="name to show")
    add.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    add.set_defaults(run=cmd_user_add)

    listing = user_commands.add_parser("list", help="list accounts")
    data_options(listing)
    listing.set_defaults(run=cmd_user_list)

    disable = user_commands.add_parser("disable", help="stop an account signing in")
    data_options(disable)
    disable.add_argument("username")
    disable.set_defaults(run=cmd_user_disable)

    client = commands.add_parser("client", help="OAuth clients (applications)")
    client_commands = client.add_subparsers(dest="client_command", required=True)

    client_add = client_commands.add_parser(
        "add", help="register a client; prints its client_id (and secret, once)"
    )
    data_options(client_add)
    client_add.add_argument("--name", required=True)
    client_add.add_argument(
        "--redirect-uri",
        action="append",
        default=[],
        help="where codes are sent (repeat for several)",
    )
    client_add.add_argument(
        "--public", action="store_true", help="a browser or mobile app: no secret, PKCE only"
    )
    client_add.add_argument(
        "--user", help="username of the system or device account client credentials act as"
    )
    client_add.add_argument("--scope", help="the most the client may ask for (SMART scopes)")
    client_add.set_defaults(run=cmd_client_add)

    client_list = client_commands.add_parser("list", help="list clients")
    data_options(client_list)
    client_list.set_defaults(run=cmd_client_list)

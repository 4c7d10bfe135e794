"""`bevan token create`: a bearer token printed for a role."""

from __future__ import annotations

import argparse
import sys

from bevan.cli.options import settings_from


def cmd_token_create(args: argparse.Namespace) -> int:
    from bevan.security.tokens import TokenAuthority, TokenError

    settings = settings_from(args)
    try:
        token = TokenAuthority.in_directory(settings.data_dir).issue(
            args.subject or f"{args.role}-token",
            args.role,
            scope=args.scope,
            lifetime=args.lifetime,
            organisation=args.organisation,
            patient_id=args.patient,
            device_id=args.device,
        )
    except TokenError as error:
        print(f"bevan token create: {error}", file=sys.stderr)
        return 2
    print(
        f"# a {args.role} token for the server whose key is in {settings.data_dir}", file=sys.stderr
    )
    print(token)
    return 0

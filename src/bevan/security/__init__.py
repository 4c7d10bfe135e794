"""Who is asking and whether they may: tokens, roles (and later relationships, audit)."""

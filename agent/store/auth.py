"""Who is signed in: magic links, console sessions and personal API tokens, in the store.

Three tables in the same SQLite file, created here (additive, IF NOT EXISTS):

- `signin_links`: one row per magic link sent. Only the SHA-256 of the link's
  secret is kept, with its contact, its expiry and when it was used; `consume`
  marks it used in the same statement that checks it is unused and unexpired,
  so a link signs in once, whoever races. The rows also count the requests per
  contact for the rate limit (`recent_links`).
- `sessions`: one row per console session, keyed by the SHA-256 of the cookie's
  secret: a copy of the database does not sign anybody in. Sign-out deletes the
  row, expiry is checked on every lookup, and they survive a restart.
- `api_tokens`: personal API tokens, hashed the same way; revoked ones stay
  (their id is shown in `onwatch token list`) but no longer match.

The secrets are 32 random bytes (`secrets.token_urlsafe`), so a plain SHA-256
is enough: there is nothing to brute-force that a slow hash would protect.
Writes go inside the caller's `store.tx()`; reads are plain. The SQL is the
store interface's (agent/store/base.py): SQLite's dialect, run on either store.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from agent.store.base import Db, Store

_SCHEMA = """
CREATE TABLE IF NOT EXISTS signin_links (
    hash TEXT PRIMARY KEY, person TEXT NOT NULL,
    created_at REAL NOT NULL, expires_at REAL NOT NULL, used_at REAL
);
CREATE INDEX IF NOT EXISTS signin_links_person ON signin_links (person, created_at);
CREATE TABLE IF NOT EXISTS sessions (
    hash TEXT PRIMARY KEY, person TEXT NOT NULL,
    created_at REAL NOT NULL, expires_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS api_tokens (
    id INTEGER PRIMARY KEY AUTOINCREMENT, hash TEXT NOT NULL UNIQUE,
    person TEXT NOT NULL, label TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL, last_used_at REAL, revoked_at REAL
);
"""
#: Personal tokens start with this, so that a leaked one is recognisable in a scan.
TOKEN_PREFIX = "onw_"


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogateescape")).hexdigest()


def new_secret() -> str:
    return secrets.token_urlsafe(32)


@dataclass(frozen=True, slots=True)
class ApiToken:
    id: int
    person: str
    label: str
    created_at: float
    last_used_at: float | None
    revoked_at: float | None


class AuthStore:
    def __init__(self, store: Store, *, create: bool = True) -> None:
        self.store = store
        self._db: Db = store.db
        if create:  # additive only, like the main schema
            store.create_tables(_SCHEMA)

    # magic links ---------------------------------------------------------------

    def add_link(self, person: str, now: float, ttl: float) -> str:
        """A new single-use sign-in secret for `person`; only its hash is kept."""
        secret = new_secret()
        self._db.execute("INSERT INTO signin_links VALUES (?,?,?,?,NULL)",
                         (digest(secret), person, now, now + ttl))
        return secret

    def recent_links(self, person: str, since: float) -> int:
        row = self._db.execute("SELECT COUNT(*) FROM signin_links WHERE person = ? AND "
                               "created_at >= ?", (person, since)).fetchone()
        return int(row[0])

    def link_state(self, secret: str, now: float) -> tuple[str, str] | None:
        """(person, "ok" | "used" | "expired") of a link, or None if no such link."""
        row = self._db.execute("SELECT person, expires_at, used_at FROM signin_links WHERE "
                               "hash = ?", (digest(secret),)).fetchone()
        if row is None:
            return None
        if row[2] is not None:
            return row[0], "used"
        return row[0], "expired" if now > row[1] else "ok"

    def consume(self, secret: str, now: float) -> str | None:
        """The link's person if it was unused and unexpired (it is used now), else None."""
        h = digest(secret)
        cur = self._db.execute("UPDATE signin_links SET used_at = ? WHERE hash = ? AND "
                               "used_at IS NULL AND expires_at >= ?", (now, h, now))
        if int(cur.rowcount) != 1:
            return None
        row = self._db.execute("SELECT person FROM signin_links WHERE hash = ?", (h,)).fetchone()
        return str(row[0])

    # sessions ------------------------------------------------------------------

    def add_session(self, person: str, now: float, ttl: float) -> str:
        secret = new_secret()
        self._db.execute("INSERT INTO sessions VALUES (?,?,?,?)",
                         (digest(secret), person, now, now + ttl))
        return secret

    def session(self, secret: str, now: float) -> str | None:
        """The person a session cookie belongs to, while it has not expired."""
        row = self._db.execute("SELECT person FROM sessions WHERE hash = ? AND expires_at > ?",
                               (digest(secret), now)).fetchone()
        return None if row is None else str(row[0])

    def end_session(self, secret: str) -> None:
        self._db.execute("DELETE FROM sessions WHERE hash = ?", (digest(secret),))

    def prune(self, now: float) -> None:
        """Expired sessions and links older than a day go (the rate limit needs less)."""
        self._db.execute("DELETE FROM sessions WHERE expires_at <= ?", (now,))
        self._db.execute("DELETE FROM signin_links WHERE created_at < ?", (now - 86400.0,))

    # personal API tokens ---------------------------------------------------------

    def add_token(self, person: str, now: float, label: str = "") -> tuple[int, str]:
        """(id, token): the token is shown once; only its hash is kept."""
        token = TOKEN_PREFIX + new_secret()
        row = self._db.execute("INSERT INTO api_tokens (hash, person, label, created_at) "
                               "VALUES (?,?,?,?) RETURNING id",
                               (digest(token), person, label, now)).fetchone()
        return int(row[0]), token

    def token_person(self, token: str) -> tuple[int, str] | None:
        """(id, person) of an unrevoked personal token, or None."""
        row = self._db.execute("SELECT id, person FROM api_tokens WHERE hash = ? AND "
                               "revoked_at IS NULL", (digest(token),)).fetchone()
        return None if row is None else (int(row[0]), str(row[1]))

    def touch_token(self, token_id: int, now: float) -> None:
        self._db.execute("UPDATE api_tokens SET last_used_at = ? WHERE id = ?", (now, token_id))

    def tokens(self) -> list[ApiToken]:
        rows = self._db.execute("SELECT id, person, label, created_at, last_used_at, revoked_at "
                                "FROM api_tokens ORDER BY id").fetchall()
        return [ApiToken(int(r[0]), str(r[1]), str(r[2]), float(r[3]), r[4], r[5]) for r in rows]

    def revoke_token(self, token_id: int, now: float) -> bool:
        cur = self._db.execute("UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND "
                               "revoked_at IS NULL", (now, token_id))
        return bool(cur.rowcount > 0)

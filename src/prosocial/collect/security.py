"""Password hashing (scrypt), signed session cookies and CSRF tokens, all from the standard library."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1  # about 16 MB and tens of milliseconds per check


def hash_password(password: str) -> str:
    """`scrypt$n$r$p$salt$hash`; the parameters are stored so they can be raised later without a migration."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    candidate = hashlib.scrypt(
        password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p), dklen=len(digest) // 2
    )
    return hmac.compare_digest(candidate.hex(), digest)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class SessionData:
    """What the cookie carries: a random session id (CSRF tokens derive from it) and the user, if logged in."""

    sid: str
    user_id: int | None = None
    issued: float = 0.0


class Signer:
    """HMAC-SHA256 signing of session cookies, and CSRF tokens bound to the session id."""

    def __init__(self, secret: str, max_age: float = 12 * 3600):
        self.key = secret.encode()
        self.max_age = max_age

    def _mac(self, purpose: str, payload: str) -> str:
        return _b64(hmac.new(self.key, f"{purpose}:{payload}".encode(), hashlib.sha256).digest())

    def dump(self, session: SessionData) -> str:
        payload = _b64(json.dumps({"sid": session.sid, "uid": session.user_id, "t": session.issued}).encode())
        return f"{payload}.{self._mac('session', payload)}"

    def load(self, cookie: str | None) -> SessionData | None:
        """The session in a cookie we signed and that has not expired; None for anything else."""
        if not cookie or "." not in cookie:
            return None
        payload, mac = cookie.rsplit(".", 1)
        if not hmac.compare_digest(mac, self._mac("session", payload)):
            return None
        try:
            data = json.loads(_unb64(payload))
            session = SessionData(str(data["sid"]), data["uid"], float(data["t"]))
        except (ValueError, KeyError, TypeError):
            return None
        return session if time.time() - session.issued < self.max_age else None

    def csrf_token(self, session: SessionData) -> str:
        return self._mac("csrf", session.sid)

    def check_csrf(self, session: SessionData, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(token, self.csrf_token(session))


def new_session(user_id: int | None = None) -> SessionData:
    """A fresh session id; issued on login and logout so an attacker-planted id never gains a user."""
    return SessionData(secrets.token_urlsafe(18), user_id, time.time())

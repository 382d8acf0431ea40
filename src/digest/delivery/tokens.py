"""Signed tokens that carry a subscriber in unsubscribe and preferences links.

itsdangerous signs with HMAC-SHA1 (keyed, so a forged or altered token fails) and accepts a list of
secrets, newest last: during a rotation the previous secret still verifies old links while every
new link is signed with the new one. The secret comes from the environment, never from config.
A secret shorter than 32 bytes is refused: whoever guesses it can sign a link for any subscriber.
Subscriber tokens do not expire: RFC 8058 unsubscribe links in old issues must keep working.
A sign-up's confirmation link is another kind, with its own salt (one kind never passes for the
other) and a timestamp, so it expires (``[signup] confirm_ttl``).
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
from dataclasses import dataclass
from functools import cached_property

from itsdangerous import BadSignature, SignatureExpired, URLSafeSerializer, URLSafeTimedSerializer

from digest.config import secret
from digest.errors import ConfigError

SECRET_ENV = "DIGEST_SECRET"
PREVIOUS_SECRET_ENV = "DIGEST_SECRET_PREVIOUS"
SALT = "digest.subscriber"
CONFIRM_SALT = "digest.signup-confirm"
MIN_SECRET_BYTES = 32  # as many as secrets.token_urlsafe(32) draws at random
MAX_SUBSCRIBER_ID = 2**31 - 1  # subscribers.id is an INTEGER column: 32-bit signed on PostgreSQL
NOT_VALID = "this link is not valid (it was altered or not made by us)"
EXPIRED = "this link has expired"
MAKE_SECRET = 'python3 -c "import secrets; print(secrets.token_urlsafe(32))"'
# Stands for a subscriber's token in links made for everyone at once (``subscriber_links``). A
# token is URL-safe base64 and a dot: the same in a link, in HTML and in plain text.
TOKEN_TAG = "%%token%%"
_URL_SAFE = bytes.maketrans(b"+/", b"-_")  # base64's two symbols as URL-safe base64 writes them


def subscriber_links(base_url: str, token: str, issue_key: str = "") -> dict[str, str]:
    """A subscriber's unsubscribe and preferences links, carrying ``token``: the one place their
    form is written. The unsubscribe link of an issue also names the issue (``&i=``, not signed:
    it only says where an unsubscribe came from, and counts only for an issue that was sent to
    that subscriber). With ``TOKEN_TAG`` for ``token``, the links every recipient of an issue
    gets, but for their token."""
    from_issue = f"&i={issue_key}" if issue_key else ""
    return {
        "unsubscribe_url": f"{base_url}/unsubscribe?t={token}{from_issue}",
        "preferences_url": f"{base_url}/preferences?t={token}",
    }


class BadToken(ValueError):
    """The token was not signed by us, or was altered."""


class ExpiredToken(BadToken):
    """A confirmation link signed by us, but longer ago than it may be used."""


@dataclass(frozen=True)
class Signer:
    """Makes and checks subscriber tokens with the current (and optionally previous) secret."""

    current: str
    previous: str | None = None

    def __post_init__(self) -> None:
        _check_length(SECRET_ENV, self.current)
        if self.previous is not None:
            _check_length(PREVIOUS_SECRET_ENV, self.previous)

    @classmethod
    def from_env(cls) -> Signer:
        current = secret(SECRET_ENV)
        if not current:
            raise ConfigError(
                f"${SECRET_ENV} is not set: it signs the unsubscribe links",
                hint=f"export {SECRET_ENV}=<the output of `{MAKE_SECRET}`> and keep it the same between runs",
            )
        return cls(current, secret(PREVIOUS_SECRET_ENV))

    @cached_property
    def _serializer(self) -> URLSafeSerializer:
        keys = [k for k in (self.previous, self.current) if k]
        return URLSafeSerializer(keys, salt=SALT)

    @cached_property
    def _token_mac(self) -> hmac.HMAC:
        """An HMAC keyed once with the key itsdangerous derives from the newest secret and the
        salt. Its ``dumps`` derives that key again and builds a signer for every token: at a
        million recipients that was the largest cost of a send."""
        signer = self._serializer.make_signer()
        return hmac.new(signer.derive_key(), digestmod=signer.digest_method)

    def token(self, subscriber_id: int) -> str:
        """The token ``URLSafeSerializer.dumps(subscriber_id)`` makes (tests hold the two equal,
        and ``subscriber_id`` reads it back with itsdangerous): an id's compact JSON is its
        digits, too short for zlib to shorten, so the payload is their base64, then the HMAC of
        that payload after the separator."""
        if type(subscriber_id) is not int:  # type(): a bool is an int, and its JSON is not its digits
            raise TypeError(f"a subscriber id is an int, not {subscriber_id!r}")
        # itsdangerous's base64_encode (URL-safe, unpadded), without its checks of what it is
        # given, nor base64.urlsafe_b64encode's two calls around binascii: bytes here.
        payload = binascii.b2a_base64(str(subscriber_id).encode("ascii"), newline=False).translate(_URL_SAFE)
        payload = payload.rstrip(b"=")
        mac = self._token_mac.copy()
        mac.update(payload)
        signature = binascii.b2a_base64(mac.digest(), newline=False).translate(_URL_SAFE).rstrip(b"=")
        return (payload + b"." + signature).decode("ascii")

    def subscriber_id(self, token: str) -> int:
        """The subscriber id a token carries; BadToken, the same for all, when it was not signed by
        us or its payload is not an id we could have signed (``true``, ``0``, ``2**70``: such a
        payload would otherwise act as subscriber 1 or fail in the database)."""
        try:
            value = self._serializer.loads(token)
        except BadSignature as exc:
            raise BadToken(NOT_VALID) from exc
        if type(value) is not int or not 1 <= value <= MAX_SUBSCRIBER_ID:  # type(): a bool is an int
            raise BadToken(NOT_VALID)
        return value

    @cached_property
    def _confirm_serializer(self) -> URLSafeTimedSerializer:
        keys = [k for k in (self.previous, self.current) if k]
        return URLSafeTimedSerializer(keys, salt=CONFIRM_SALT)

    def confirm_token(self, nonce: str) -> str:
        """The token of a sign-up's confirmation link: the sign-up's nonce, signed and dated."""
        return self._confirm_serializer.dumps(nonce)

    def confirm_nonce(self, token: str, max_age: float) -> str:
        """The nonce a confirmation token carries; ExpiredToken past ``max_age`` seconds,
        BadToken when it was not signed by us (a subscriber token included) or was altered."""
        try:
            value = self._confirm_serializer.loads(token, max_age=int(max_age))
        except SignatureExpired as exc:
            raise ExpiredToken(EXPIRED) from exc
        except BadSignature as exc:
            raise BadToken(NOT_VALID) from exc
        if type(value) is not str or not value:
            raise BadToken(NOT_VALID)
        return value

    def keyed_hash(self, value: str) -> str:
        """HMAC-SHA256 of ``value`` under the current secret, in hex: how a sign-up's IP address
        is kept (it proves the same address made two requests, and cannot be reversed without
        the secret, unlike a plain hash of the few billion IPv4 addresses)."""
        return hmac.new(self.current.encode(), b"digest.ip:" + value.encode(), hashlib.sha256).hexdigest()


def _check_length(name: str, value: str) -> None:
    """Refuse a secret too short to resist guessing, naming the variable and how to make one."""
    size = len(value.encode("utf-8"))
    if size < MIN_SECRET_BYTES:
        raise ConfigError(
            f"${name} is {size} byte(s) long: a secret that signs unsubscribe links needs at least "
            f"{MIN_SECRET_BYTES} bytes",
            hint=f"make one with `{MAKE_SECRET}`",
        )

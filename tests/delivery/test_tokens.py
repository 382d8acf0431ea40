"""Subscriber tokens: made fast, and still exactly what itsdangerous makes and reads back."""

from __future__ import annotations

import pytest
from itsdangerous import URLSafeSerializer
from itsdangerous.signer import Signer as ItsdangerousSigner

from digest.delivery.tokens import SALT, Signer

CURRENT = "the-current-secret-long-enough-to-sign-links"
PREVIOUS = "the-previous-secret-long-enough-to-sign-links"


@pytest.mark.parametrize("previous", [None, PREVIOUS])
def test_a_token_is_the_one_itsdangerous_makes_and_reads_back_as_its_subscriber(previous):
    signer = Signer(CURRENT, previous)
    reference = URLSafeSerializer([k for k in (previous, CURRENT) if k], salt=SALT)
    for subscriber_id in (1, 9, 10, 12345, 999_999, 2**31 - 1):
        token = signer.token(subscriber_id)
        assert token == reference.dumps(subscriber_id)
        assert signer.subscriber_id(token) == subscriber_id
    assert Signer(PREVIOUS).token(7) != Signer(CURRENT).token(7)


def test_a_thousand_tokens_derive_the_signing_key_once(monkeypatch):
    """Deriving the key per token was the largest per-recipient cost of a send."""
    derived = []
    real = ItsdangerousSigner.derive_key

    def counting(self, secret_key=None):
        derived.append(1)
        return real(self, secret_key)

    monkeypatch.setattr(ItsdangerousSigner, "derive_key", counting)
    signer = Signer(CURRENT)
    tokens = {signer.token(i) for i in range(1, 1001)}
    assert len(tokens) == 1000
    assert len(derived) == 1


def test_something_other_than_an_id_is_not_signed():
    with pytest.raises(TypeError):
        Signer(CURRENT).token(True)

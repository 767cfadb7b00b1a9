"""The bridge's signed webhook format (bot.factory.signing)."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from bot.factory.signing import (
    EVENT_ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    SecretUsed,
    SignatureError,
    sign,
    signed_headers,
    verify,
    verify_rotating,
)

SECRET = "whsec-very-secret-value"
BODY = b'{"type":"task.created","timestamp":"2025-07-14T09:00:00.000Z","channel":"tasks:pending"}'
T0 = 1_752_483_600


def _verify(
    *,
    secret: str = SECRET,
    timestamp: str | None = str(T0),
    signature: str | None = None,
    body: bytes = BODY,
    now: float = T0,
    tolerance_seconds: float = 300,
) -> None:
    if signature is None:
        signature = sign(SECRET, T0, BODY)
    verify(
        secret,
        timestamp=timestamp,
        signature=signature,
        body=body,
        now=now,
        tolerance_seconds=tolerance_seconds,
    )


def test_sign_is_hmac_sha256_of_timestamp_dot_body() -> None:
    expected = hmac.new(SECRET.encode(), f"{T0}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert sign(SECRET, T0, BODY) == "sha256=" + expected


def test_signed_headers_round_trip() -> None:
    headers = signed_headers(SECRET, BODY, event_id="evt_1", timestamp=T0)
    assert headers == {
        EVENT_ID_HEADER: "evt_1",
        TIMESTAMP_HEADER: str(T0),
        SIGNATURE_HEADER: sign(SECRET, T0, BODY),
    }
    verify(
        SECRET,
        timestamp=headers[TIMESTAMP_HEADER],
        signature=headers[SIGNATURE_HEADER],
        body=BODY,
        now=T0 + 1.5,
    )


def test_upper_case_hex_is_accepted() -> None:
    signature = sign(SECRET, T0, BODY)
    _verify(signature="sha256=" + signature.removeprefix("sha256=").upper())


def _reason(**kwargs: object) -> str:
    with pytest.raises(SignatureError) as caught:
        _verify(**kwargs)  # type: ignore[arg-type]
    assert SECRET not in str(caught.value)
    assert SECRET not in repr(caught.value.args)
    return caught.value.reason


def test_tampered_body_is_rejected() -> None:
    assert _reason(body=BODY.replace(b"pending", b"*")) == "signature mismatch"


def test_wrong_secret_is_rejected() -> None:
    assert _reason(secret="another-secret") == "signature mismatch"


def test_timestamp_swapped_after_signing_is_rejected() -> None:
    assert _reason(timestamp=str(T0 + 1), now=T0 + 1) == "signature mismatch"


@pytest.mark.parametrize("offset", [-300, 0, 300])
def test_timestamps_within_tolerance_pass(offset: int) -> None:
    _verify(now=T0 + offset)


@pytest.mark.parametrize("offset", [301, -301, 86_400])
def test_stale_or_future_timestamps_are_rejected(offset: int) -> None:
    # now - timestamp = +301: the delivery is stale; -301: it claims to come from the future.
    assert _reason(now=T0 + offset) == "timestamp outside tolerance"


def test_custom_tolerance() -> None:
    _verify(now=T0 + 30, tolerance_seconds=30)
    assert _reason(now=T0 + 31, tolerance_seconds=30) == "timestamp outside tolerance"


@pytest.mark.parametrize("signature", ["", None])
def test_missing_signature(signature: str | None) -> None:
    with pytest.raises(SignatureError) as caught:
        verify(SECRET, timestamp=str(T0), signature=signature, body=BODY, now=T0)
    assert caught.value.reason == "missing signature"


@pytest.mark.parametrize("timestamp", ["", None])
def test_missing_timestamp(timestamp: str | None) -> None:
    assert _reason(timestamp=timestamp) == "missing timestamp"


@pytest.mark.parametrize("timestamp", ["12.5", "-1", "abc", " 1752483600", "1e9"])
def test_malformed_timestamp(timestamp: str) -> None:
    assert _reason(timestamp=timestamp) == "malformed timestamp"


@pytest.mark.parametrize(
    "signature",
    ["abc", "sha256=", "sha256=xyz", "md5=" + "0" * 64, "sha256=" + "0" * 63, "0" * 64],
)
def test_malformed_signature(signature: str) -> None:
    assert _reason(signature=signature) == "malformed signature"


def test_secret_never_in_any_message() -> None:
    cases: list[dict[str, object]] = [
        {"body": b"other"},
        {"secret": SECRET + "x"},
        {"now": T0 + 10_000},
        {"timestamp": None},
        {"timestamp": "x"},
        {"signature": "sha256=nothex"},
        {"signature": sign(SECRET + "x", T0, BODY)},
    ]
    for case in cases:
        with pytest.raises(SignatureError) as caught:
            _verify(**case)  # type: ignore[arg-type]
        text = f"{caught.value} {caught.value!r} {caught.value.reason}"
        assert SECRET not in text
        assert sign(SECRET, T0, BODY).removeprefix("sha256=") not in text


def test_empty_secret_is_a_configuration_error_not_a_signature_error() -> None:
    with pytest.raises(ValueError) as caught:
        verify("", timestamp=str(T0), signature=sign(SECRET, T0, BODY), body=BODY, now=T0)
    assert not isinstance(caught.value, SignatureError)
    with pytest.raises(ValueError):
        sign("", T0, BODY)


# --- rotation (FACTORY_WEBHOOK_SECRET_PREVIOUS) ---------------------------------------------


def _rotating(signed_with: str, previous: str | None) -> SecretUsed:
    return verify_rotating(
        "new-secret",
        previous,
        timestamp=str(T0),
        signature=sign(signed_with, T0, BODY),
        body=BODY,
        now=T0,
    )


def test_rotation_accepts_either_secret_and_says_which() -> None:
    assert _rotating("new-secret", SECRET) is SecretUsed.CURRENT
    assert _rotating(SECRET, SECRET) is SecretUsed.PREVIOUS


def test_rotation_over_refuses_the_previous_secret() -> None:
    assert _rotating("new-secret", None) is SecretUsed.CURRENT
    with pytest.raises(SignatureError) as caught:
        _rotating(SECRET, None)
    assert caught.value.reason == "signature mismatch"


def test_rotation_refuses_a_third_secret_and_keeps_other_reasons() -> None:
    with pytest.raises(SignatureError) as caught:
        _rotating("someone-else", SECRET)
    assert caught.value.reason == "signature mismatch"
    with pytest.raises(SignatureError) as stale:
        verify_rotating(
            "new-secret",
            SECRET,
            timestamp=str(T0),
            signature=sign(SECRET, T0, BODY),
            body=BODY,
            now=T0 + 301,
        )
    assert stale.value.reason == "timestamp outside tolerance"

"""Twilio's API description checks the bridge's requests (sandbox.twilio_spec)."""

from __future__ import annotations

import pytest

from sandbox.twilio_spec import TwilioSpec, form_pairs, load_twilio_spec

SID = "AC" + "0" * 32
CALLS = f"/2010-04-01/Accounts/{SID}/Calls.json"
MESSAGES = f"/2010-04-01/Accounts/{SID}/Messages.json"


@pytest.fixture(scope="module")
def spec() -> TwilioSpec:
    found = load_twilio_spec()
    assert found is not None, "shared/specs/twilio-api-v2010.json not found"
    return found


def test_the_bridges_call_conforms(spec: TwilioSpec) -> None:
    form = form_pairs(
        {
            "To": "+15550100001",
            "From": "+15550100000",
            "Twiml": "<Response/>",
            "StatusCallback": "https://bridge.example.com/twilio/voice/status?tasks=t1",
            "StatusCallbackEvent": ["initiated", "ringing", "answered", "completed"],
            "StatusCallbackMethod": "POST",
        }
    )
    assert spec.check("POST", CALLS, form) == []


def test_violations_are_named(spec: TwilioSpec) -> None:
    problems = spec.check(
        "POST",
        CALLS,
        [("To", "+1555"), ("StatusCallbackMethod", "PUT"), ("Timeout", "soon"), ("Bogus", "1")],
    )
    text = "\n".join(problems)
    assert "'From' is a required property" in text
    assert "StatusCallbackMethod: 'PUT' is not one of" in text
    assert "Timeout: 'soon' is not of type 'integer'" in text
    assert "Bogus: not a documented parameter" in text


def test_bad_account_sid_and_unknown_operation(spec: TwilioSpec) -> None:
    bad = spec.check(
        "POST", "/2010-04-01/Accounts/nope/Messages.json", [("To", "+1"), ("Body", "x")]
    )
    assert any("path AccountSid" in p for p in bad)
    assert spec.check("DELETE", MESSAGES, []) == [
        f"DELETE {MESSAGES}: not an operation of Twilio's API description"
    ]
    assert spec.check("POST", MESSAGES, [("To", "+1"), ("From", "+2"), ("Body", "hi")]) == []

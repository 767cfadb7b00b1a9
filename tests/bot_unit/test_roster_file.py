"""The roster file (``BRIDGE_ROSTER_FILE``): one entry per person, no unknown keys.

Two entries with the same name made the ladder plan two rows with the same stored key: the
claim failed, the ladder retried at once, forever, and nobody was paged. Two entries with the
same Discord id or phone page one person twice; a misspelt ``[[operator]]`` gave an empty
roster. All are refused when the file is loaded, so ``check-config`` reports them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.roster import RosterError, load_roster
from tests.bot_unit.test_settings import REQUIRED, run_cli

SAM = '[[operators]]\nname = "Sam"\ndiscord_user_id = 11\nphone = "+15550000001"\non_call = true\n'


def roster_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "roster.toml"
    path.write_text(text, encoding="utf-8")
    return path


def refusal(tmp_path: Path, text: str) -> str:
    with pytest.raises(RosterError) as caught:
        load_roster(roster_file(tmp_path, text))
    return str(caught.value)


@pytest.mark.parametrize("second", ["Sam", "sam", " SAM "])
def test_two_entries_with_one_name_are_refused_naming_both(tmp_path: Path, second: str) -> None:
    other = f'[[operators]]\nname = "{second}"\ndiscord_user_id = 12\nphone = "+15550000002"\n'
    message = refusal(tmp_path, SAM + other)
    assert f"operator #2 ({second!r}) has the same name as operator #1 ('Sam')" in message
    assert "names must differ, ignoring case" in message


def test_two_entries_with_one_discord_id_are_refused(tmp_path: Path) -> None:
    other = '[[operators]]\nname = "Pat"\ndiscord_user_id = "11"\n'
    message = refusal(tmp_path, SAM + other)
    assert "operator #2 ('Pat') has the same discord_user_id 11 as operator #1 ('Sam')" in message
    assert "paged twice" in message


def test_two_entries_with_one_phone_are_refused(tmp_path: Path) -> None:
    other = '[[operators]]\nname = "Pat"\nphone = "+15550000001"\non_call = true\n'
    message = refusal(tmp_path, SAM + other)
    assert "operator #2 ('Pat') has the same phone +15550000001 as operator #1 ('Sam')" in message
    assert "every SMS and call twice" in message


def test_a_misspelt_top_level_key_is_refused(tmp_path: Path) -> None:
    message = refusal(tmp_path, SAM.replace("[[operators]]", "[[operator]]"))
    assert "unknown top-level key 'operator' (did you mean 'operators'?)" in message
    assert "allowed: 'operators'" in message
    # spelt right, distinct people load; entries without an id or phone are no duplicates
    text = SAM + '[[operators]]\nname = "Pat"\n[[operators]]\nname = "Kim"\nadmin = true\n'
    roster = load_roster(roster_file(tmp_path, text))
    assert [o.name for o in roster.operators] == ["Sam", "Pat", "Kim"]
    assert [o.name for o in roster.admins] == ["Kim"]


def test_an_unknown_key_of_an_entry_names_the_allowed_ones(tmp_path: Path) -> None:
    message = refusal(tmp_path, SAM.replace("on_call", "oncall"))
    assert "operator #1: oncall: unknown key; allowed: name, factory_user_id" in message
    assert "on_call, admin" in message


def test_check_config_reports_a_duplicate_entry(tmp_path: Path) -> None:
    path = roster_file(tmp_path, SAM + SAM.replace("11", "12").replace("0001", "0002"))
    bad = run_cli("check-config", env={**REQUIRED, "BRIDGE_ROSTER_FILE": str(path)}, cwd=tmp_path)
    assert bad.returncode == 2
    assert "configuration OK" not in bad.stdout
    assert "BRIDGE_ROSTER_FILE" in bad.stderr
    assert "operator #2 ('Sam') has the same name as operator #1 ('Sam')" in bad.stderr


def test_check_config_reports_a_misspelt_top_level_key(tmp_path: Path) -> None:
    path = roster_file(tmp_path, SAM.replace("[[operators]]", "[[operator]]"))
    bad = run_cli("check-config", env={**REQUIRED, "BRIDGE_ROSTER_FILE": str(path)}, cwd=tmp_path)
    assert bad.returncode == 2
    assert "unknown top-level key 'operator'" in bad.stderr


def test_two_entries_with_one_factory_user_id_are_refused(tmp_path: Path) -> None:
    sam = SAM + 'factory_user_id = "user-sam"\n'
    other = '[[operators]]\nname = "Pat"\nfactory_user_id = "user-sam"\n'
    message = refusal(tmp_path, sam + other)
    assert "operator #2 ('Pat') has the same factory_user_id user-sam as operator #1" in message


def test_run_with_a_bad_roster_says_what_to_fix_without_a_traceback(tmp_path: Path) -> None:
    path = roster_file(tmp_path, SAM.replace("[[operators]]", "[[operator]]"))
    env = {**REQUIRED, "BRIDGE_ROSTER_FILE": str(path), "DATABASE_URL": "sqlite:///./bridge.db"}
    bad = run_cli("run", env=env, cwd=tmp_path)
    assert bad.returncode == 2
    assert "unknown top-level key 'operator'" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_a_roster_saved_with_a_bom_and_crlf_line_ends_loads(tmp_path: Path) -> None:
    """Windows editors (Notepad) write a UTF-8 byte order mark and CRLF line ends."""
    path = tmp_path / "roster.toml"
    path.write_bytes(b"\xef\xbb\xbf" + SAM.replace("\n", "\r\n").encode("utf-8"))
    roster = load_roster(path)
    assert [(o.name, o.phone, o.on_call) for o in roster.operators] == [
        ("Sam", "+15550000001", True)
    ]


@pytest.mark.parametrize("bom", [b"", b"\xef\xbb\xbf"])
def test_a_roster_not_in_utf8_is_refused_naming_the_byte(tmp_path: Path, bom: bytes) -> None:
    path = tmp_path / "roster.toml"
    text = '[[operators]]\nname = "José"\n'
    path.write_bytes(bom + text.encode("latin-1"))  # Windows-1252 / Latin-1: é is one byte
    with pytest.raises(RosterError) as caught:
        load_roster(path)
    at = len(bom) + text.index("é") + 1
    assert str(caught.value) == (
        f"roster file {path} is not UTF-8 text (byte {at}, 0xe9): save it as UTF-8"
    )


@pytest.mark.parametrize("command", ["check-config", "run"])
def test_a_roster_not_in_utf8_is_reported_without_a_traceback(tmp_path: Path, command: str) -> None:
    path = tmp_path / "roster.toml"
    path.write_bytes(SAM.replace("Sam", "José").encode("latin-1"))
    env = {**REQUIRED, "BRIDGE_ROSTER_FILE": str(path), "DATABASE_URL": "sqlite:///./bridge.db"}
    bad = run_cli(command, env=env, cwd=tmp_path)
    assert bad.returncode == 2
    assert "is not UTF-8 text (byte 26, 0xe9): save it as UTF-8" in bad.stderr
    assert "Traceback" not in bad.stderr

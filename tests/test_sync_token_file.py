"""Issue 21: a token on the command line is visible to every user (/proc/PID/cmdline). `station sync` reads it
from --token-file or env STATION_SYNC_TOKEN; a token file readable by others is warned about; --token still
works and says it is visible; serve-platform takes --token-file too. Against a real platform on 127.0.0.1."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from station.domain import Decision, Disposition, Grade, ReturnReason, ReturnRequest
from station.records import StationStore, record_from_parts
from station.server.api import create_app, create_token, hash_token, init_db, make_engine
from station.server.models import Token
from station.server.runner import ServerThread
from station.sync import SyncError, read_token_file


def _cli(*args: str, env: dict | None = None):
    from station.cli import app

    res = CliRunner().invoke(app, list(args), catch_exceptions=True, env={"COLUMNS": "400", **(env or {})})
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        raise AssertionError(f"traceback: {type(res.exception).__name__}: {res.exception}")
    return res


@pytest.fixture()
def platform(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'platform.db'}")
    init_db(engine)
    token = create_token(engine, "station", "st-1")
    srv = ServerThread(create_app(engine=engine)).start()
    yield srv, token
    srv.stop()
    engine.dispose()


def _station(tmp_path, n: int = 2):
    data = tmp_path / "st"
    with StationStore(data / "station.db").open() as store:
        for i in range(n):
            sha = store.put_image(np.full((32, 32, 3), 40 + i * 50, np.uint8)).sha256
            dec = Decision(Grade.A, Disposition.RESTOCK, (), False, ("G-A",))
            store.append(record_from_parts(ReturnRequest(f"O-{i}", "SKU", ReturnReason.WRONG_ITEM), [], dec, 1,
                                           [("front", sha)], "m", "st-1", {}))
    return data


def _token_file(tmp_path, text: str, mode: int):
    path = tmp_path / "sync.token"
    path.write_text(text)
    os.chmod(path, mode)
    return path


def test_read_token_file_checks_content_and_mode(tmp_path):
    assert read_token_file(_token_file(tmp_path, "\n  s3cret-token-1  \n", 0o600)) == ("s3cret-token-1", None)
    token, warning = read_token_file(_token_file(tmp_path, "s3cret-token-1\n", 0o644))
    assert token == "s3cret-token-1" and "readable by group and others (mode 0644)" in warning
    assert "chmod 600" in warning
    assert "readable by its group" in read_token_file(_token_file(tmp_path, "t0ken-abcdef", 0o640))[1]
    with pytest.raises(SyncError, match="is empty") as exc:
        read_token_file(_token_file(tmp_path, " \n\n", 0o600))
    assert not exc.value.transient
    with pytest.raises(SyncError, match="not found"):
        read_token_file(tmp_path / "missing.token")
    with pytest.raises(SyncError, match="is not a file"):
        read_token_file(tmp_path)


def test_sync_with_a_token_file_pushes_and_warns_only_when_others_can_read_it(platform, tmp_path):
    srv, token = platform
    data = _station(tmp_path)
    private = _token_file(tmp_path, token + "\n", 0o600)
    res = _cli("sync", "--once", "--json", "--url", srv.url, "--token-file", str(private), "--data-dir", str(data))
    assert res.exit_code == 0, res.stderr
    assert json.loads(res.stdout)["pushed"] == 2 and "warning" not in res.stderr

    os.chmod(private, 0o644)
    res = _cli("sync", "--once", "--json", "--url", srv.url, "--token-file", str(private), "--data-dir", str(data))
    assert res.exit_code == 0 and json.loads(res.stdout)["ok"]
    assert f"token file {private} is readable by group and others" in res.stderr

    wrong = tmp_path / "wrong.token"
    wrong.write_text("not-the-station-token\n")
    os.chmod(wrong, 0o600)
    res = _cli("sync", "--once", "--json", "--url", srv.url, "--token-file", str(wrong), "--data-dir", str(data))
    assert res.exit_code == 1 and "401" in json.loads(res.stdout)["error"]  # the file's token was the one sent


def test_sync_token_from_the_environment_and_the_visible_token_option(platform, tmp_path):
    srv, token = platform
    data = _station(tmp_path)
    res = _cli("sync", "--once", "--json", "--url", srv.url, "--data-dir", str(data),
               env={"STATION_SYNC_TOKEN": token})
    assert res.exit_code == 0 and json.loads(res.stdout)["pushed"] == 2 and "warning" not in res.stderr
    res = _cli("sync", "--once", "--json", "--url", srv.url, "--token", token, "--data-dir", str(data),
               env={"STATION_SYNC_TOKEN": ""})
    assert res.exit_code == 0 and json.loads(res.stdout)["ok"]
    assert "other users of this machine can read it" in res.stderr and "--token-file" in res.stderr


@pytest.mark.parametrize("make, needle", [
    (lambda d: d / "absent.token", "not found"),
    (lambda d: _token_file(d, "", 0o600), "is empty"),
])
def test_an_unusable_token_file_is_one_clear_line(make, needle, tmp_path):
    data = _station(tmp_path, 1)
    res = _cli("sync", "--once", "--url", "http://127.0.0.1:9", "--token-file", str(make(tmp_path)),
               "--data-dir", str(data), env={"STATION_SYNC_TOKEN": ""})
    assert res.exit_code == 2 and needle in res.stderr and len(res.stderr.strip().splitlines()) == 1
    res = _cli("sync", "--once", "--url", "http://127.0.0.1:9", "--token", "abcdefgh1", "--token-file",
               str(make(tmp_path)), "--data-dir", str(data))
    assert res.exit_code == 2 and "either --token or --token-file" in res.stderr


def test_serve_platform_creates_the_tokens_of_a_token_file(tmp_path, monkeypatch):
    import station.server.runner as runner

    served = []
    monkeypatch.setattr(runner, "serve", lambda app, host, port: served.append((host, port)))
    url = f"sqlite:///{tmp_path / 'p.db'}"
    tokens = _token_file(tmp_path, "# station and admin\nstation:st-9:station-secret-1\n\nadmin:root:admin-secret-22\n",
                         0o600)
    res = _cli("serve-platform", "--database-url", url, "--port", "8799", "--token-file", str(tokens))
    assert res.exit_code == 0, res.stderr
    assert served == [("127.0.0.1", 8799)] and "warning" not in res.stderr
    engine = make_engine(url)
    with Session(engine) as s:
        rows = {t.token_hash: (t.role, t.subject) for t in s.scalars(select(Token))}
    engine.dispose()
    assert rows[hash_token("station-secret-1")] == ("station", "st-9")
    assert rows[hash_token("admin-secret-22")] == ("admin", "root")

    bad = _token_file(tmp_path, "station:st-9:short\n", 0o644)
    res = _cli("serve-platform", "--database-url", url, "--token-file", str(bad))
    assert res.exit_code == 2 and "line 1" in res.stderr and "short" not in res.stderr  # the secret is not echoed
    res = _cli("serve-platform", "--database-url", url, "--token", "station:st-9:station-secret-1")
    assert res.exit_code == 0 and "other users of this machine can read them" in res.stderr

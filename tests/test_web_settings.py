"""Server settings (command line > environment > default, validated) and the admin token store."""
from __future__ import annotations

import argparse
import stat

import pytest

from audiocopy.config import MIB, ServerSettings
from audiocopy.errors import ConfigError
from audiocopy.web.auth import TOKEN_FILE, AdminAuth, load_or_create
from audiocopy.web.launch import build_parser
from audiocopy.web.settings import settings_from_args


def parse(argv, env=None, check_db=False) -> ServerSettings:
    args = build_parser().parse_args(argv)
    return settings_from_args({k: v for k, v in vars(args).items() if k != "verbose"}, env or {}, check_db=check_db)


def test_defaults_bind_loopback():
    s = parse(["--db", "some/db"])
    assert (s.host, s.port, s.max_streams) == ("127.0.0.1", 8080, 16)
    assert s.max_message_bytes == MIB and s.max_upload_bytes == 50 * MIB
    assert s.state_path == s.db / "server" and s.allow_private_monitors is False


def test_waiting_windows_limit_grows_with_the_streams_unless_set():
    assert parse(["--db", "d"]).pending_limit == 256  # 16 streams + 8 monitors: the floor
    s = parse(["--db", "d", "--max-streams", "300", "--max-monitors", "20"])
    assert s.pending_limit == 640 and s.public_dict()["max_pending"] == 640
    assert parse(["--db", "d", "--max-streams", "300", "--max-pending", "100"]).pending_limit == 100


def test_environment_is_the_fallback_and_the_command_line_wins():
    env = {"AUDIOCOPY_DB": "env/db", "AUDIOCOPY_PORT": "9000", "AUDIOCOPY_MAX_STREAMS": "3",
           "AUDIOCOPY_ALLOW_PRIVATE_MONITORS": "yes", "AUDIOCOPY_MAX_UPLOAD_BYTES": "10M",
           "AUDIOCOPY_ALLOWED_ORIGINS": "https://A.example, http://b.example:8000"}
    s = parse([], env)
    assert str(s.db) == "env/db" and s.port == 9000 and s.max_streams == 3 and s.allow_private_monitors
    assert s.max_upload_bytes == 10 * MIB
    assert s.allowed_origins == ("https://a.example", "http://b.example:8000")
    s = parse(["--port", "9100", "--db", "cli/db", "--max-message-bytes", "512K"], env)
    assert s.port == 9100 and str(s.db) == "cli/db" and s.max_message_bytes == 512 * 1024


def test_bare_boolean_flag_means_true():
    assert parse(["--db", "d", "--allow-private-monitors"]).allow_private_monitors is True
    assert parse(["--db", "d", "--allow-private-monitors", "false"]).allow_private_monitors is False


@pytest.mark.parametrize("argv, env, message", [
    ([], {}, "no database"),
    (["--db", "d", "--port", "http"], {}, "--port: invalid value 'http': must be a whole number"),
    (["--db", "d"], {"AUDIOCOPY_PORT": "70000"}, "AUDIOCOPY_PORT: invalid value '70000': must be between 0 and 65535"),
    (["--db", "d", "--max-streams", "0"], {}, "--max-streams"),
    (["--db", "d", "--max-message-bytes", "lots"], {}, "byte count"),
    (["--db", "d", "--admin-token", "short"], {}, "at least 16 characters"),
    (["--db", "d", "--allowed-origins", "ftp://x"], {}, "not an origin"),
    (["--db", "d", "--allowed-origins", "https://x.example/path"], {}, "not an origin"),
    (["--db", "d", "--host", "a b"], {}, "--host"),
    (["--db", "d", "--engine", "magic"], {}, "known engines"),
    (["--db", "d", "--allow-private-monitors", "maybe"], {}, "true/false"),
    (["--db", "d", "--allowed-hosts", "http://x.example"], {}, "--allowed-hosts: invalid value"),
    (["--db", "d", "--allowed-hosts", "a b"], {}, "not a host"),
    (["--db", "d", "--allowed-hosts", "x.example:99999"], {}, "not a host"),
    (["--db", "d", "--allowed-hosts", ","], {}, "at least one host"),
    (["--db", "d", "--start-timeout-s", "0"], {}, "--start-timeout-s"),
    (["--db", "d", "--idle-timeout-s", "soon"], {}, "--idle-timeout-s"),
    (["--db", "d", "--max-connections-per-address", "0"], {}, "--max-connections-per-address"),
    (["--db", "d", "--max-identify-jobs", "0"], {}, "--max-identify-jobs"),
    (["--db", "d", "--identify-token", "short"], {}, "at least 16 characters"),
])
def test_bad_values_are_one_clear_config_error(argv, env, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse(argv, env)


def test_database_is_checked(tiny_db, tmp_path):
    with pytest.raises(ConfigError, match="recognizer database not found"):
        parse(["--db", str(tmp_path / "missing")], check_db=True)
    with pytest.raises(ConfigError, match="negatives-dir"):
        parse(["--db", str(tiny_db), "--negatives-dir", str(tmp_path / "none")], check_db=True)
    s = parse(["--db", str(tiny_db), "--engine", "cnnbin"], check_db=True)
    assert s.engine == "cnnbin"


def test_public_dict_never_shows_the_token():
    s = parse(["--db", "d", "--admin-token", "x" * 20])
    assert "admin_token" not in s.public_dict() and "x" * 20 not in str(s.public_dict())


def test_token_generated_once_and_stored_hashed(tmp_path):
    s = ServerSettings(db=tmp_path / "db", state_dir=tmp_path / "state")
    first = load_or_create(s)
    assert first.new_token and len(first.new_token) >= 24
    path = tmp_path / "state" / TOKEN_FILE
    assert first.new_token not in path.read_text()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    second = load_or_create(s)
    assert second.new_token is None and second.token_sha256 == first.token_sha256
    assert second.check(f"Bearer {first.new_token}") is True
    assert second.check("Bearer nope") is False and second.check(None) is None
    assert second.check(f"Basic {first.new_token}") is False


def test_workers_starting_together_share_one_admin_token_hash(tmp_path, monkeypatch):
    """Another worker on the same state folder stores its hash between this one's check and its write: that hash
    is kept and used, never an error, and this worker announces no token of its own."""
    import hashlib
    from pathlib import Path

    theirs = hashlib.sha256(b"their-token").hexdigest()
    real_exists = Path.exists

    def exists_but_another_worker_is_faster(self):
        if self.name == TOKEN_FILE and not real_exists(self):
            self.parent.mkdir(parents=True, exist_ok=True)
            self.write_text(theirs + "\n")
            return False
        return real_exists(self)

    monkeypatch.setattr(Path, "exists", exists_but_another_worker_is_faster)
    auth = load_or_create(ServerSettings(db=tmp_path / "db", state_dir=tmp_path / "state"))
    assert auth.new_token is None and auth.token_sha256 == theirs
    assert auth.check("Bearer their-token") is True
    assert sorted(p.name for p in (tmp_path / "state").iterdir()) == [TOKEN_FILE]  # no temporary file left


def test_configured_token_wins_and_bad_hash_file_is_an_error(tmp_path):
    s = ServerSettings(db=tmp_path / "db", state_dir=tmp_path / "state", admin_token="configured-token-123")
    auth = load_or_create(s)
    assert auth.new_token is None and auth.check("Bearer configured-token-123")
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / TOKEN_FILE).write_text("garbage")
    with pytest.raises(ConfigError, match="delete it"):
        load_or_create(ServerSettings(db=tmp_path / "db", state_dir=tmp_path / "state"))
    assert AdminAuth.from_token("a").check("bearer a") is True  # the scheme is case-insensitive


def test_namespace_with_extra_fields_is_accepted():
    ns = argparse.Namespace(db="d", command="serve", func=None, verbose=False, port=None)
    assert settings_from_args(ns, {}, check_db=False).port == 8080


def test_hardening_defaults_and_the_host_allowlist():
    s = parse(["--db", "d"])
    assert (s.start_timeout_s, s.idle_timeout_s, s.max_identify_jobs, s.identify_token) == (10.0, 30.0, 2, None)
    assert s.connections_per_address == 32  # max_streams + 16
    assert s.host_allowlist == ("localhost", "127.0.0.1", "[::1]")
    assert parse(["--db", "d", "--host", "192.168.1.5"]).host_allowlist == ("192.168.1.5", "localhost", "127.0.0.1",
                                                                           "[::1]")
    assert parse(["--db", "d", "--host", "fe80::1"]).host_allowlist[0] == "[fe80::1]"
    assert parse(["--db", "d", "--host", "0.0.0.0"]).host_allowlist == ("localhost", "127.0.0.1", "[::1]")
    env = {"AUDIOCOPY_ALLOWED_HOSTS": "Audio.Example.org, 10.0.0.2:8080,[::1]", "AUDIOCOPY_IDLE_TIMEOUT_S": "5",
           "AUDIOCOPY_MAX_CONNECTIONS_PER_ADDRESS": "4", "AUDIOCOPY_IDENTIFY_TOKEN": "identify-token-0123456789"}
    s = parse(["--max-identify-jobs", "3", "--start-timeout-s", "2.5"], {**env, "AUDIOCOPY_DB": "d"})
    assert s.host_allowlist == ("audio.example.org", "10.0.0.2:8080", "[::1]")
    assert (s.idle_timeout_s, s.start_timeout_s, s.connections_per_address, s.max_identify_jobs) == (5.0, 2.5, 4, 3)
    public = s.public_dict()
    assert "identify_token" not in public and "identify-token-0123456789" not in str(public)
    assert public["allowed_hosts"] == ["audio.example.org", "10.0.0.2:8080", "[::1]"]

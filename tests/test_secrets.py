"""No secret is known in advance: every JWT key is generated or handed over, never
written in the repository, and a process without one refuses to start."""

from __future__ import annotations

import ast
import os
import re
import stat
import subprocess
import sys
import time
import warnings

import jwt as pyjwt
import pytest
from flask_jwt_extended import decode_token

from common.auth import JWT_ALGORITHM, decode_access_token
from common.security import ensure_secrets_file
from common.settings import DEFAULT_SECRETS_FILE, REPOSITORY_ROOT, SettingsError, load_settings

SECRET_VARIABLES = ("EMS_JWT_SECRET", "EMS_JWT_SECRET_FILE", "EMS_SECRETS_FILE", "EMS_ENV")
# Files where a key could be written down: code, configuration, scripts, documents.
SCANNED_SUFFIXES = (".py", ".js", ".yml", ".yaml", ".toml", ".cfg", ".ini", ".sh", ".json",
                    ".html", ".md", ".mk", ".sql", ".conf", ".cnf", ".txt", ".env")
SCANNED_NAMES = ("Caddyfile", "Makefile", "Procfile", "Dockerfile")
QUOTED = re.compile(r'"((?:[^"\\\n]|\\.)*)"|\'((?:[^\'\\\n]|\\.)*)\'|`([^`]*)`')
# Unquoted values too (YAML, env files, shell): every run of non-space characters,
# and what follows `=` or `:` in it.
WORD = re.compile(r"[^\s\"'`]+")


@pytest.fixture
def local_environment(monkeypatch, tmp_path):
    """Settings as a `make run` process reads them: no secret variable, a fresh secrets file."""
    for name in SECRET_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    secrets_file = tmp_path / ".ems-secrets"
    ensure_secrets_file(secrets_file)
    monkeypatch.setenv("EMS_SECRETS_FILE", str(secrets_file))
    return secrets_file


def repository_literals() -> set[str]:
    """Return every string literal (and unquoted word) of the repository's tracked files."""
    names = subprocess.run(["git", "ls-files", "-z"], cwd=REPOSITORY_ROOT, check=True,
                           capture_output=True, text=True).stdout.split("\0")
    literals: set[str] = set()
    for name in names:
        path = REPOSITORY_ROOT / name
        if not name or not path.is_file():
            continue
        if not (name.endswith(SCANNED_SUFFIXES) or path.name.startswith(SCANNED_NAMES)):
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        if name.endswith(".py"):
            for node in ast.walk(ast.parse(text)):
                if isinstance(node, ast.Constant) and isinstance(node.value, str | bytes):
                    value = node.value
                    literals.add(value.decode(errors="replace") if isinstance(value, bytes) else value)
        for match in QUOTED.finditer(text):
            literals.add(next(group for group in match.groups() if group is not None))
        for word in WORD.findall(text):
            literals.update({word, word.split("=", 1)[-1], word.split(":", 1)[-1]})
    return {literal for variant in literals for literal in (variant, variant.strip())
            if literal and _encodable(literal)}


def _encodable(text: str) -> bool:
    # A lone surrogate (poison-message tests) cannot be a key: no setting can hold it.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def forged_admin_token(key: str) -> str:
    """Return an administrator's access token, as the portal would issue it, signed with `key`."""
    now = int(time.time())
    claims = {"sub": "1", "role": "admin", "name": "Forger", "type": "access", "fresh": False,
              "jti": "forged", "iat": now, "nbf": now, "exp": now + 600}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PyJWT warns about short keys: that is the point here
        return pyjwt.encode(claims, key, algorithm=JWT_ALGORITHM)


def accepted_by_services(token: str, settings, web_app) -> list[str]:
    """Return which verifiers accept `token`: the shared one and the portal's."""
    accepted = []
    try:
        decode_access_token(token, settings)
        accepted.append("common.auth")
    except pyjwt.InvalidTokenError:
        pass
    with web_app.app_context():
        try:
            decode_token(token)
            accepted.append("web")
        except pyjwt.InvalidTokenError:
            pass
    return accepted


def test_no_string_in_the_repository_signs_a_token_that_any_service_accepts(local_environment):
    from web import create_app

    settings = load_settings()
    web_app = create_app(settings)
    literals = repository_literals()
    assert len(literals) > 5000, "the scan found too little to be the whole repository"

    # The check itself works: the key in use is accepted by both verifiers.
    assert accepted_by_services(forged_admin_token(settings.jwt_secret), settings, web_app) == [
        "common.auth", "web"]
    accepted = {literal: by for literal in literals
                if (by := accepted_by_services(forged_admin_token(literal), settings, web_app))}
    assert accepted == {}


def test_make_run_generates_a_random_secret_only_its_owner_can_read(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"

    assert ensure_secrets_file(first) is True
    assert ensure_secrets_file(second) is True
    before = first.read_text()
    assert ensure_secrets_file(first) is False, "an existing file is kept"
    assert first.read_text() == before
    assert stat.S_IMODE(first.stat().st_mode) == 0o600
    secret = before.split("EMS_JWT_SECRET=", 1)[1].split()[0]
    assert len(secret) >= 48
    assert secret not in second.read_text()


def test_the_repository_secrets_file_is_never_committed():
    ignored = subprocess.run(["git", "check-ignore", "-q", str(DEFAULT_SECRETS_FILE)], cwd=REPOSITORY_ROOT)
    assert ignored.returncode == 0
    tracked = subprocess.run(["git", "ls-files", DEFAULT_SECRETS_FILE.name], cwd=REPOSITORY_ROOT,
                             capture_output=True, text=True, check=True).stdout
    assert tracked == ""


def test_every_process_reads_the_secrets_file_below_variables_and_secret_files(local_environment,
                                                                               monkeypatch, tmp_path):
    from_file = local_environment.read_text().split("EMS_JWT_SECRET=", 1)[1].split()[0]
    assert load_settings().jwt_secret == from_file

    docker_secret = tmp_path / "jwt"
    docker_secret.write_text("a-docker-secret-of-a-decent-length-0123\n")
    monkeypatch.setenv("EMS_JWT_SECRET_FILE", str(docker_secret))
    assert load_settings().jwt_secret == "a-docker-secret-of-a-decent-length-0123"

    monkeypatch.setenv("EMS_JWT_SECRET", "a-variable-secret-of-a-decent-length-0123")
    assert load_settings().jwt_secret == "a-variable-secret-of-a-decent-length-0123"


def test_a_secrets_file_others_can_read_is_refused(local_environment):
    local_environment.chmod(0o644)
    with pytest.raises(SettingsError, match="chmod 600"):
        load_settings()


@pytest.mark.parametrize("env", ["development", "test", "production"])
def test_without_a_secret_settings_refuse_in_every_environment(local_environment, monkeypatch, env):
    local_environment.write_text("# no secret here\n")
    monkeypatch.setenv("EMS_ENV", env)
    with pytest.raises(SettingsError, match="no JWT secret"):
        load_settings()


def test_a_short_secret_is_refused(monkeypatch):
    monkeypatch.setenv("EMS_JWT_SECRET", "short-and-guessable")
    with pytest.raises(SettingsError, match="at least 32"):
        load_settings()


@pytest.mark.parametrize("module", ["notifier", "web"])
def test_a_process_without_a_secret_refuses_to_start_with_a_clear_message(tmp_path, module):
    empty = tmp_path / ".ems-secrets"
    empty.write_text("")
    empty.chmod(0o600)
    env = {key: value for key, value in os.environ.items() if key not in SECRET_VARIABLES}
    env["EMS_SECRETS_FILE"] = str(empty)
    arguments = ["demo-logins"] if module == "web" else []
    started = subprocess.run([sys.executable, "-m", module, *arguments], cwd=REPOSITORY_ROOT, env=env,
                             capture_output=True, text=True, timeout=60)
    assert started.returncode != 0
    assert "no JWT secret" in started.stderr

"""Where the store's and the bus's credentials come from, and the refusal of a file others may read.

In order: ``[store] credentials_file``; ``$CREDENTIALS_DIRECTORY/s3.credentials`` (systemd's
``LoadCredential=s3.credentials:/etc/fair-agent/s3.credentials``); ``AWS_ACCESS_KEY_ID`` and
``AWS_SECRET_ACCESS_KEY``. Files use the AWS shared-credentials format. The secret never appears in a
log line, an error, a sidecar or a crate: its repr hides it.
"""

from __future__ import annotations

import configparser
import os
import stat
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..core.config import BusSettings, StoreSettings
from ..core.errors import ConfigError

#: The names under $CREDENTIALS_DIRECTORY (systemd) that hold the store's and the bus's credentials.
SYSTEMD_CREDENTIAL = "s3.credentials"
SYSTEMD_BUS_CREDENTIAL = "nats.creds"


@dataclass(frozen=True, slots=True)
class Credentials:
    access_key_id: str
    secret_access_key: str = field(repr=False)
    source: str  # where they came from, for messages
    #: Temporary credentials (STS) come with one.
    session_token: str | None = field(default=None, repr=False)

    def __repr__(self) -> str:
        return f"Credentials(access_key_id={self.access_key_id!r}, source={self.source!r})"


def load_credentials(settings: StoreSettings, env: Mapping[str, str] | None = None) -> Credentials:
    env = os.environ if env is None else env
    if settings.credentials_file is not None:
        return _from_file(settings.credentials_file)
    if env.get("CREDENTIALS_DIRECTORY"):
        candidate = Path(env["CREDENTIALS_DIRECTORY"]) / SYSTEMD_CREDENTIAL
        if candidate.exists():
            return _from_file(candidate)
    key, secret = env.get("AWS_ACCESS_KEY_ID"), env.get("AWS_SECRET_ACCESS_KEY")
    if key and secret:
        return Credentials(key, secret, "the environment (AWS_ACCESS_KEY_ID)", env.get("AWS_SESSION_TOKEN"))
    raise ConfigError(
        "[store] is set but no credentials were found: set credentials_file, or give the service "
        f"LoadCredential={SYSTEMD_CREDENTIAL}:<file>, or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
    )


def private_text(path: Path, what: str) -> str:
    """The text of a secret's file, refused when every user of the machine may read or change it."""
    try:
        info = path.stat()
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read the {what} file {path}: {exc.strerror or exc}") from exc
    if info.st_mode & (stat.S_IROTH | stat.S_IWOTH):
        raise ConfigError(
            f"the {what} file {path} is readable or writable by every user of this "
            f"machine (mode {stat.S_IMODE(info.st_mode):04o}); not using it. Run: chmod o-rw {path}"
        )
    return text


def bus_credentials(settings: BusSettings, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """Keyword arguments for ``nats.connect``: a .creds file, a user and password, or nothing."""
    env = os.environ if env is None else env
    path = settings.credentials_file
    if path is None and env.get("CREDENTIALS_DIRECTORY"):
        candidate = Path(env["CREDENTIALS_DIRECTORY"]) / SYSTEMD_BUS_CREDENTIAL
        path = candidate if candidate.exists() else None
    if path is None:
        return {}
    text = private_text(path, "bus credentials")
    if "BEGIN NATS USER JWT" in text:
        return {"user_credentials": str(path)}
    try:
        fields = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        fields = {}
    if not isinstance(fields.get("user"), str) or not isinstance(fields.get("password"), str):
        raise ConfigError(
            f"the bus credentials file {path} is neither a NATS .creds file nor 'user = \"...\"' and "
            "'password = \"...\"' lines"
        )
    return {"user": fields["user"], "password": fields["password"]}


def _from_file(path: Path) -> Credentials:
    text = private_text(path, "store's credentials")
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(text if text.lstrip().startswith("[") else "[default]\n" + text)
    except configparser.Error:
        raise ConfigError(
            f"the store's credentials file {path} is not in the AWS credentials format "
            "([default] / aws_access_key_id = ... / aws_secret_access_key = ...)"
        ) from None
    sections = parser.sections()
    section = parser["default" if "default" in sections else sections[0]] if sections else {}
    key, secret = section.get("aws_access_key_id"), section.get("aws_secret_access_key")
    if not key or not secret:
        raise ConfigError(
            f"the store's credentials file {path} lacks aws_access_key_id or aws_secret_access_key"
        )
    token = section.get("aws_session_token")
    return Credentials(key.strip(), secret.strip(), str(path), token.strip() if token else None)

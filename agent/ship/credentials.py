"""Where the store's credentials come from, and the refusal of a file others may read.

In order: ``[store] credentials_file``; ``$CREDENTIALS_DIRECTORY/s3.credentials`` (systemd's
``LoadCredential=s3.credentials:/etc/fair-agent/s3.credentials``); ``AWS_ACCESS_KEY_ID`` and
``AWS_SECRET_ACCESS_KEY``. Files use the AWS shared-credentials format. The secret never appears in a
log line, an error, a sidecar or a crate: its repr hides it.
"""

from __future__ import annotations

import configparser
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..core.config import StoreSettings
from ..core.errors import ConfigError

#: The name under $CREDENTIALS_DIRECTORY (systemd) that holds the store's credentials.
SYSTEMD_CREDENTIAL = "s3.credentials"


@dataclass(frozen=True, slots=True)
class Credentials:
    access_key_id: str
    secret_access_key: str = field(repr=False)
    source: str  # where they came from, for messages

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
        return Credentials(key, secret, "the environment (AWS_ACCESS_KEY_ID)")
    raise ConfigError(
        "[store] is set but no credentials were found: set credentials_file, or give the service "
        f"LoadCredential={SYSTEMD_CREDENTIAL}:<file>, or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
    )


def _from_file(path: Path) -> Credentials:
    try:
        info = path.stat()
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read the store's credentials file {path}: {exc.strerror or exc}") from exc
    if info.st_mode & (stat.S_IROTH | stat.S_IWOTH):
        raise ConfigError(
            f"the store's credentials file {path} is readable or writable by every user of this "
            f"machine (mode {stat.S_IMODE(info.st_mode):04o}); not using it. Run: chmod o-rw {path}"
        )
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
    return Credentials(key.strip(), secret.strip(), str(path))

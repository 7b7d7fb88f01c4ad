"""The hub's configuration: one TOML file with a [hub] table."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from pydantic import Field, ValidationError, model_validator

from ..core.config import explain_validation, read_config_file
from ..core.errors import ConfigError
from ..core.strict import Strict


class WebSettings(Strict):
    """The catalogue's web page and JSON API ([hub.web]); absent: no web server."""

    #: Loopback by default; any other address needs token_file or trusted_proxy.
    address: str = "127.0.0.1"
    port: int = Field(default=8470, ge=0, le=65535)
    #: A bearer token every request must carry (Authorization: Bearer ...), read from this file.
    token_file: Path | None = None
    #: The address of an authenticating reverse proxy (OIDC etc.) in front: requests from it are
    #: trusted, requests from anywhere else are refused unless they carry the token.
    trusted_proxy: str | None = None
    #: An agent whose last event or status is older than this is marked as gone quiet.
    quiet_after_s: float = Field(default=6 * 3600.0, gt=0)

    @property
    def loopback(self) -> bool:
        import ipaddress

        try:
            return ipaddress.ip_address(self.address).is_loopback
        except ValueError:
            return self.address == "localhost"

    @model_validator(mode="after")
    def _protected_beyond_loopback(self) -> WebSettings:
        if not self.loopback and self.token_file is None and self.trusted_proxy is None:
            raise ValueError(
                f"refusing to serve the catalogue on {self.address}, beyond loopback, without "
                "protection: set token_file or trusted_proxy"
            )
        return self


class HubSettings(Strict):
    #: One or more NATS servers, comma-separated.
    bus_url: str = Field(pattern=r"^(nats|tls)://[^\s,]+(,\s*(nats|tls)://[^\s,]+)*$")
    #: A NATS .creds file, or ``user = "..."`` and ``password = "..."`` lines (the hub's own user).
    bus_credentials_file: Path | None = None
    #: ``postgresql://user@host:port/database``; the password from ``catalogue_password_file``, or
    #: $PGPASSWORD, or ~/.pgpass, never from this file.
    catalogue_dsn: str = Field(pattern=r"^postgres(ql)?://")
    catalogue_password_file: Path | None = None
    #: The JetStream stream of the agents' events; created with its durable consumer if missing.
    stream: str = Field(default="FAIR", pattern=r"^[A-Za-z0-9_-]+$")
    consumer: str = Field(default="hub", pattern=r"^[A-Za-z0-9_-]+$")
    #: Events per catalogue transaction.
    batch_size: int = Field(default=500, ge=1, le=10_000)
    #: The stream's limits: when full it refuses new events (agents keep them and retry) rather
    #: than dropping old ones.
    stream_max_bytes: int = Field(default=8 << 30, ge=1 << 20)
    stream_max_msgs: int = Field(default=-1, ge=-1)
    #: JetStream drops a message whose id it saw within this window.
    duplicate_window_s: float = Field(default=120.0, gt=0)
    #: Prometheus metrics of the hub; port 0: off.
    metrics_address: str = "127.0.0.1"
    metrics_port: int = Field(default=0, ge=0, le=65535)
    web: WebSettings | None = None

    @property
    def servers(self) -> list[str]:
        return [part.strip() for part in self.bus_url.split(",")]

    @model_validator(mode="after")
    def _no_password_in_the_dsn(self) -> HubSettings:
        from urllib.parse import urlsplit

        if urlsplit(self.catalogue_dsn).password is not None:
            raise ValueError(
                "catalogue_dsn holds a password: put it in catalogue_password_file (or $PGPASSWORD, "
                "~/.pgpass) instead, so it is never in a file others read or in a log"
            )
        return self


class HubConfig(Strict):
    hub: HubSettings


def load_hub_config(path: Path | None, env: Mapping[str, str] | None = None) -> HubConfig:
    env = os.environ if env is None else env
    if path is None and env.get("FAIR_HUB_CONFIG"):
        path = Path(env["FAIR_HUB_CONFIG"])
    if path is None:
        raise ConfigError("the hub needs its configuration: --config hub.toml (see README, Running the hub)")
    data = read_config_file(path)
    try:
        return HubConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(explain_validation(exc, path)) from exc

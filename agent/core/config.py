"""Configuration: one frozen pydantic model, loaded from one TOML file and the environment.

Precedence, highest first: explicit overrides (CLI flags), ``FAIR_AGENT_*`` environment variables,
the TOML file, built-in defaults. Every setting has a default that works, so the agent runs with no
file at all. Nested settings are reached with a double underscore: ``FAIR_AGENT_SITE__LICENSE``.
"""

from __future__ import annotations

import os
import socket
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, ValidationError, field_validator, model_validator

from .errors import ConfigError, RetryKind
from .parties import URL_PATTERN, Contact, Organisation
from .strict import Strict

ENV_PREFIX = "FAIR_AGENT_"
#: Names the config file rather than a setting.
CONFIG_PATH_ENV = "FAIR_AGENT_CONFIG"

#: Partial downloads, editor lock files and desktop clutter: never data, never ingested.
DEFAULT_IGNORE = (
    "*.part",
    "*.partial",
    "*.crdownload",
    "*.download",
    "*.tmp",
    "*.temp",
    "*.swp",
    "~$*",
    ".~lock*",
    ".#*",
    ".DS_Store",
    "._*",
    "Thumbs.db",
    "desktop.ini",
)


def default_state_dir(env: Mapping[str, str] | None = None) -> Path:
    """Where the ledger lives when nothing says otherwise.

    systemd's ``StateDirectory=`` sets ``$STATE_DIRECTORY``; otherwise the XDG per-user location.
    """
    env = os.environ if env is None else env
    if env.get("STATE_DIRECTORY"):
        # systemd may list several directories separated by colons; the first is ours.
        return Path(env["STATE_DIRECTORY"].split(":")[0])
    xdg = env.get("XDG_STATE_HOME")
    home = Path(env["HOME"]) if env.get("HOME") else Path.home()
    base = Path(xdg) if xdg else home / ".local" / "state"
    return base / "fair-agent"


def local_timezone() -> str | None:
    """This machine's IANA time zone (from /etc/localtime or $TZ), if it has a name."""
    named = os.environ.get("TZ", "").lstrip(":")
    if not named:
        try:
            target = os.readlink("/etc/localtime")
        except OSError:
            return None
        named = target.partition("zoneinfo/")[2]
    try:
        ZoneInfo(named)
    except (ZoneInfoNotFoundError, ValueError):
        return None
    return named or None


def known_timezone(value: str | None) -> str | None:
    """A pydantic check: None, or the name of an IANA time zone this machine knows."""
    if value is not None:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not a known IANA time zone (e.g. 'Europe/Berlin')") from None
    return value


class CompletionPolicy(Strict):
    """When a session counts as complete and may be ingested."""

    #: Seconds without any change in the session; every change starts the wait again.
    quiet_period_s: float = Field(default=30.0, gt=0)
    #: Sizes and mtimes are compared between two looks this far apart. On a folder watched by
    #: events the second look is at the end of the quiet period and the first this long before it
    #: (at most half the quiet period): a session both agree on is sealed at once. On a polled
    #: folder (network shares, which see other machines' writes late) the second look is also at
    #: least this long after the first, even when that is past the end of the quiet period.
    stability_look_s: float = Field(default=1.0, gt=0)
    #: A glob (e.g. "*.done" or "READY"): a folder session is never sealed until a file in it
    #: matches. Loose files in the watch root do not wait for markers.
    marker: str | None = None
    #: A session still changing after this long is reported in the log (and still waited for).
    max_session_s: float = Field(default=6 * 3600.0, gt=0)

    def strictest(self, other: CompletionPolicy) -> CompletionPolicy:
        """The policy that waits at least as long as both, for a marker if either wants one."""
        # Most files of a session share the root's policy object: no field-by-field comparison.
        if other is self or other == self:
            return self
        return CompletionPolicy(
            quiet_period_s=max(self.quiet_period_s, other.quiet_period_s),
            stability_look_s=max(self.stability_look_s, other.stability_look_s),
            marker=self.marker or other.marker,
            max_session_s=max(self.max_session_s, other.max_session_s),
        )

    @property
    def look_spacing_s(self) -> float:
        """Seconds between the two looks on a folder watched by events (at most half the quiet period)."""
        return min(self.stability_look_s, self.quiet_period_s / 2)

    @property
    def first_look_s(self) -> float:
        """Seconds after the last change at which the first of the two looks is taken."""
        return self.quiet_period_s - self.look_spacing_s


class RootSettings(Strict):
    """One watched folder."""

    path: Path
    #: Stable name of the root, part of every batch id; defaults to the folder's name.
    name: str | None = None
    #: "events" (inotify), "polling" (network shares: NFS, SMB/CIFS, FUSE), or "auto": polling
    #: when the folder sits on such a filesystem.
    mode: Literal["auto", "events", "polling"] = "auto"
    #: Overrides the agent-wide completion policy for this folder.
    completion: CompletionPolicy | None = None

    @property
    def root_name(self) -> str:
        return self.name or self.path.resolve().name or "root"


class RetryPolicy(Strict):
    """Exponential backoff with full jitter: the n-th retry waits uniform(0, min(max, base * 2**(n-1)))."""

    attempts: int = Field(default=5, ge=1, le=1000)
    base_delay_s: float = Field(default=1.0, gt=0)
    max_delay_s: float = Field(default=60.0, gt=0)


class RetrySettings(RetryPolicy):
    """The default policy, and optional policies per kind of retryable failure."""

    #: A file still changing while it was read (a writer that paused longer than the quiet period).
    changing: RetryPolicy | None = None
    #: Reading failed (an I/O error, a flaky network share).
    io: RetryPolicy | None = None
    #: Writing a sidecar or crate failed (disk full, read-only filesystem, permission denied).
    output: RetryPolicy | None = None
    #: The ledger stayed locked by another writer.
    ledger: RetryPolicy | None = None

    def policy_for(self, kind: RetryKind) -> RetryPolicy:
        specific: RetryPolicy | None = getattr(self, kind.value)
        return specific or self


class SiteSettings(Strict):
    """Who publishes the data and under which terms, and whom to ask; goes into every crate."""

    #: The lab, by name; the crate's publisher when ``publisher`` is not set.
    organisation: str | None = None
    #: URL of the license for data ingested here, e.g. https://creativecommons.org/licenses/by/4.0/
    license: str | None = Field(default=None, pattern=URL_PATTERN)
    #: IANA time zone of the instruments' clocks (e.g. "Europe/Berlin"), for dates written without
    #: one; a rule's own ``timezone`` wins.
    timezone: str | None = None
    #: The organisation that publishes the crates (name, ROR, url).
    publisher: Organisation | None = None
    #: Whom to ask about the data: the contactPoint of the crates' publisher.
    contact: Contact | None = None

    _known_zone = field_validator("timezone")(known_timezone)

    @property
    def publishing_organisation(self) -> Organisation | None:
        """The crates' publisher: ``publisher``, else the lab by name; with the site's contact."""
        found = self.publisher or (Organisation(name=self.organisation) if self.organisation else None)
        if found is not None and found.contact is None and self.contact is not None:
            found = found.model_copy(update={"contact": self.contact})
        return found


class MetricsSettings(Strict):
    """Prometheus metrics over HTTP; off unless enabled, and on the loopback address by default."""

    enabled: bool = False
    address: str = "127.0.0.1"
    #: 0 picks a free port (said in the log).
    port: int = Field(default=9464, ge=0, le=65535)


class StoreSettings(Strict):
    """S3-compatible object storage every ingested file is shipped to (see agent/ship)."""

    #: Any S3-compatible endpoint: http(s)://host[:port]; https in production.
    endpoint: str = Field(pattern=r"^https?://[^/\s]+/?$")
    #: Made by the storage admins; the agent never creates buckets.
    bucket: str = Field(min_length=3, max_length=63, pattern=r"^[a-z0-9][a-z0-9.\-]*[a-z0-9]$")
    region: str = "us-east-1"
    #: Prepended to every key (e.g. "facility-a/").
    prefix: str = ""
    #: Files larger than this go in parts of this size (more if a file would need over 10,000).
    part_size_mib: int = Field(default=64, ge=5, le=5120)
    #: Parts or files in flight at once.
    concurrency: int = Field(default=4, ge=1, le=64)
    #: AWS shared-credentials format ([default] aws_access_key_id, aws_secret_access_key); readable
    #: by its owner (and group) only. Else $CREDENTIALS_DIRECTORY/s3.credentials (systemd's
    #: LoadCredential=), else AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY.
    credentials_file: Path | None = None
    #: Longest wait between two tries while the store is unreachable (full jitter below it).
    retry_max_s: float = Field(default=300.0, gt=0)
    #: How long `scan` and `ship` (without --wait) keep trying an unreachable store before they
    #: exit and leave the backlog to the service or a later `ship`.
    give_up_after_s: float = Field(default=60.0, ge=0)

    @property
    def part_size(self) -> int:
        return self.part_size_mib << 20


class BusSettings(Strict):
    """The event bus (NATS JetStream) the agent announces to the facility's hub (see agent/ship)."""

    #: One or more servers of a NATS cluster, comma-separated.
    url: str = Field(pattern=r"^(nats|tls)://[^\s,]+(,\s*(nats|tls)://[^\s,]+)*$")
    #: A NATS credentials file (``.creds``: JWT and NKey seed), or ``user = "..."`` and
    #: ``password = "..."`` lines; readable by its owner (and group) only. Else
    #: $CREDENTIALS_DIRECTORY/nats.creds (systemd's LoadCredential=), else no authentication.
    credentials_file: Path | None = None
    #: An announcement without the hub's receipt after this long is published again (same id).
    receipt_timeout_s: float = Field(default=600.0, gt=0)
    #: Longest wait between two tries while the bus is unreachable (full jitter below it).
    retry_max_s: float = Field(default=300.0, gt=0)
    #: How long `scan` and `ship` keep trying an unreachable bus before they exit and leave the
    #: events to the service or a later `ship`.
    give_up_after_s: float = Field(default=60.0, ge=0)

    @property
    def servers(self) -> list[str]:
        return [part.strip() for part in self.url.split(",")]


def default_agent_name() -> str:
    return socket.gethostname() or "fair-agent"


class AgentConfig(Strict):
    #: Stable name of this PC in object keys and events.
    agent_name: str = Field(default_factory=default_agent_name, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
    state_dir: Path = Field(default_factory=default_state_dir)
    roots: tuple[RootSettings, ...] = ()
    #: Folder of rule files (``*.toml``, see rules/README.md); none: every file gets the generic rule.
    rules_dir: Path | None = None
    ignore: tuple[str, ...] = DEFAULT_IGNORE
    #: Batches processed at once, by each process: each of a shared scan's, the service and each of
    #: its helpers (scan_processes).
    workers: int = Field(default=4, ge=1, le=256)
    #: Files of a session ingested and committed together; a larger session goes in parts of this
    #: size, one after the other, so that memory follows the part and not the session.
    batch_max_files: int = Field(default=1000, ge=1)
    #: Files hashed at once (threads); hashlib releases the GIL, so one per core is the ceiling.
    hash_threads: int = Field(default_factory=lambda: os.cpu_count() or 2, ge=1, le=256)
    #: Processes that share a ``fair-agent scan`` (see service.shards): 0, one per core for a
    #: folder of at least FILES_PER_PROCESS files each; 1, never more than one; N, up to N
    #: whatever the folder holds (at most one per top-level folder or loose file). The service's
    #: too: the helpers it starts in a burst, when FILES_PER_PROCESS files wait for a worker or half
    #: its queue is taken (service.offload).
    scan_processes: int = Field(default=0, ge=0, le=256)
    #: How sidecars are made durable: "auto" (one syncfs per batch on local disks, or each file
    #: alone while others' unwritten data slows syncfs down; an fsync per file on network and FUSE
    #: filesystems), or force "filesystem" (the same as auto's on local disks) or "per-file".
    sync_strategy: Literal["auto", "filesystem", "per-file"] = "auto"
    #: Batches waiting between discovery and the workers; a full queue makes discovery wait.
    queue_size: int = Field(default=64, ge=1)
    read_chunk_bytes: int = Field(default=1 << 20, ge=4096, le=1 << 28)
    #: Seconds an extractor may spend on one file's metadata before the file is dead-lettered.
    extract_timeout_s: float = Field(default=120.0, gt=0)
    #: Address space (MiB) of each worker process that runs a native-code parser (HDF5).
    extract_memory_mb: int = Field(default=1024, ge=128)
    retry: RetrySettings = RetrySettings()
    site: SiteSettings = SiteSettings()
    metrics: MetricsSettings = MetricsSettings()
    #: Absent: nothing is shipped.
    store: StoreSettings | None = None
    #: Absent: no events.
    bus: BusSettings | None = None
    completion: CompletionPolicy = CompletionPolicy()
    #: Seconds between reconciliation scans that catch changes whose notifications were lost.
    reconcile_interval_s: float = Field(default=600.0, gt=0)
    #: How often a polled root is looked at, in milliseconds.
    poll_interval_ms: int = Field(default=2000, ge=50)
    #: The share of the system's inotify watches (fs.inotify.max_user_watches) the agent may use
    #: for all its roots, one per folder; a root that would need more is polled instead.
    inotify_watch_share: float = Field(default=0.5, gt=0, le=1)
    #: On SIGTERM/SIGINT, seconds that in-flight batches get to finish before they are abandoned
    #: (an abandoned batch is redone cleanly on the next start).
    shutdown_grace_s: float = Field(default=20.0, ge=0)

    @field_validator("agent_name")
    @classmethod
    def _not_a_subject_word(cls, value: str) -> str:
        # fair.v1.receipt.<agent> carries receipts: an agent named so would publish into them.
        if value == "receipt":
            raise ValueError("'receipt' is reserved in the bus's subjects; choose another agent_name")
        return value

    @field_validator("state_dir")
    @classmethod
    def _expand_state_dir(cls, value: Path) -> Path:
        # Absolute: the ledger is opened by URI, and a relative path would change with the cwd.
        return value.expanduser().absolute()

    @model_validator(mode="after")
    def _state_outside_roots(self) -> AgentConfig:
        for root in self.roots:
            ensure_outside(self.state_dir, root.path)
        return self

    @property
    def ledger_path(self) -> Path:
        return self.state_dir / "ledger.sqlite3"

    def completion_for(self, root: RootSettings) -> CompletionPolicy:
        return root.completion or self.completion


def ensure_outside(state_dir: Path, watched: Path) -> None:
    """Refuse a state directory inside a watched folder: the agent would watch its own ledger."""
    state, root = state_dir.expanduser().resolve(), watched.expanduser().resolve()
    if state == root or root in state.parents:
        raise ValueError(f"state_dir {state} lies inside the watched folder {root}; move it outside")


def read_config_file(path: Path) -> dict[str, Any]:
    """A TOML configuration file's tables (the agent's or the hub's). Raises ConfigError."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc


def load_config(
    path: Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> AgentConfig:
    """Build the configuration from defaults, the TOML file, the environment and overrides."""
    env = os.environ if env is None else env
    if path is None and env.get(CONFIG_PATH_ENV):
        path = Path(env[CONFIG_PATH_ENV])
    data: dict[str, Any] = {}
    if path is not None:
        data = read_config_file(path)
    _merge(data, _from_env(env))
    _merge(data, dict(overrides or {}))
    if "state_dir" not in data:
        data["state_dir"] = default_state_dir(env)
    try:
        return AgentConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(explain_validation(exc, path)) from exc


def _from_env(env: Mapping[str, str]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, raw in env.items():
        if not key.startswith(ENV_PREFIX) or key == CONFIG_PATH_ENV:
            continue
        keys = key[len(ENV_PREFIX) :].lower().split("__")
        node = result
        for part in keys[:-1]:
            node = node.setdefault(part, {})
        node[keys[-1]] = _parse_env_value(raw)
    return result


def _parse_env_value(raw: str) -> Any:
    # A TOML literal when it is one (8, 2.5, true, ["a", "b"]); otherwise the plain string, so that
    # paths and URLs need no quoting.
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value


def explain_validation(exc: ValidationError, path: Path | None) -> str:
    """A configuration's validation errors, one line per setting."""
    where = f" in {path}" if path else ""
    lines = [f"invalid configuration{where}:"]
    for err in exc.errors():
        key = ".".join(str(part) for part in err["loc"]) or "(top level)"
        message = "unknown setting" if err["type"] == "extra_forbidden" else err["msg"]
        lines.append(f"  {key}: {message}")
    return "\n".join(lines)

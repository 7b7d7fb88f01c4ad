"""Configuration: defaults that work, one TOML file, environment overrides, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.core.config import DEFAULT_IGNORE, AgentConfig, default_state_dir, load_config
from agent.core.errors import ConfigError

from .conftest import write


def test_defaults_work_without_a_file() -> None:
    config = load_config(None, env={"HOME": "/home/lab"})
    assert config.state_dir == Path("/home/lab/.local/state/fair-agent")
    assert config.ignore == DEFAULT_IGNORE and "*.part" in config.ignore
    assert config.workers >= 1 and config.hash_threads >= 1


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"STATE_DIRECTORY": "/var/lib/fair-agent"}, "/var/lib/fair-agent"),
        ({"STATE_DIRECTORY": "/var/lib/a:/var/lib/b"}, "/var/lib/a"),
        ({"XDG_STATE_HOME": "/x/state"}, "/x/state/fair-agent"),
    ],
)
def test_default_state_dir(env: dict[str, str], expected: str) -> None:
    assert default_state_dir(env) == Path(expected)


def test_file_then_env_then_overrides(tmp_path: Path) -> None:
    cfg = write(
        tmp_path / "agent.toml",
        'workers = 2\nqueue_size = 10\n[site]\norganisation = "Lab A"\nlicense = "https://x/l"\n',
    )
    env = {"FAIR_AGENT_QUEUE_SIZE": "20", "FAIR_AGENT_SITE__ORGANISATION": "Lab B", "HOME": "/h"}
    config = load_config(cfg, env=env, overrides={"workers": 3})
    assert config.workers == 3  # explicit beats everything
    assert config.queue_size == 20  # env beats file
    assert config.site.organisation == "Lab B" and config.site.license == "https://x/l"


def test_config_path_from_environment(tmp_path: Path) -> None:
    cfg = write(tmp_path / "a.toml", "workers = 7\n")
    assert load_config(None, env={"FAIR_AGENT_CONFIG": str(cfg), "HOME": "/h"}).workers == 7


def test_roots_from_file(tmp_path: Path) -> None:
    cfg = write(
        tmp_path / "a.toml",
        f'state_dir = "{tmp_path}/state"\n[[roots]]\npath = "/data/xrd"\nname = "xrd-1"\n',
    )
    config = load_config(cfg, env={})
    assert config.roots[0].root_name == "xrd-1"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("wokers = 3\n", "wokers: unknown setting"),
        ("workers = 0\n", "workers: Input should be greater than or equal to 1"),
        ("[retry]\nattempts = 'many'\n", "retry.attempts"),
        ("workers = \n", "not valid TOML"),
    ],
)
def test_bad_config_names_the_key(tmp_path: Path, text: str, message: str) -> None:
    cfg = write(tmp_path / "a.toml", text)
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        load_config(cfg, env={"HOME": "/h"})


def test_unknown_environment_setting_is_an_error() -> None:
    with pytest.raises(ConfigError, match="wrokers: unknown setting"):
        load_config(None, env={"FAIR_AGENT_WROKERS": "3", "HOME": "/h"})


def test_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "missing.toml", env={})


def test_state_dir_inside_a_watch_root_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="inside the watched folder"):
        load_config(
            None,
            env={},
            overrides={"state_dir": tmp_path / "drop" / "state", "roots": [{"path": tmp_path / "drop"}]},
        )


def test_config_is_frozen() -> None:
    config = AgentConfig(state_dir=Path("/s"))
    with pytest.raises(ValueError):
        config.workers = 9

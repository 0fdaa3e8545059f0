"""A user's defaults for the command line: the scheme pack and the payment policy, set once.

Precedence, first found wins:

1. the command-line option (`--scheme`, `--policy`, `check PACK`);
2. the environment: `GROUPER_SCHEME`, `GROUPER_POLICY`;
3. the config file: `GROUPER_CONFIG` if set, else `config.toml` in the user config folder
   (`$XDG_CONFIG_HOME/grouper/`, default `~/.config/grouper/`; on Windows `%APPDATA%\\grouper\\`),
   with the keys `scheme = "..."` and `policy = "..."` (a relative path is relative to the file);
4. the shipped demo pack (33 DRGs, for trying grouper out), with a warning on stderr. A policy
   has no fallback: `settle` without one is a usage error.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from .errors import UsageError

SETTINGS = ("scheme", "policy")
ENVIRONMENT = {"scheme": "GROUPER_SCHEME", "policy": "GROUPER_POLICY"}


def config_file() -> Path:
    """Where the user's config file is (it need not exist)."""
    explicit = os.environ.get("GROUPER_CONFIG")
    if explicit:
        return Path(explicit).expanduser()
    if sys.platform == "win32" and os.environ.get("APPDATA"):
        folder = Path(os.environ["APPDATA"])
    else:
        folder = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return folder / "grouper" / "config.toml"


@dataclass(frozen=True)
class Setting:
    value: str | None
    source: str | None   # e.g. "GROUPER_SCHEME" or "/home/me/.config/grouper/config.toml"; None: not set


def _from_file(name: str) -> Setting:
    path = config_file()
    if not path.is_file():
        if os.environ.get("GROUPER_CONFIG"):
            raise UsageError(f"GROUPER_CONFIG names {path}, which is not a file")
        return Setting(None, None)
    import tomllib   # only when there is a config file: start-up time

    try:
        data = tomllib.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"cannot read the config file {path}: {exc}") from None
    unknown = sorted(set(data) - set(SETTINGS))
    if unknown:
        raise UsageError(f"{path}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(SETTINGS)}")
    value = data.get(name)
    if value is None:
        return Setting(None, None)
    if not isinstance(value, str) or not value.strip():
        raise UsageError(f"{path}: {name} must be a path in quotes, e.g. {name} = \"packs/chs-drg-2.0\"")
    resolved = Path(value).expanduser()
    if not resolved.is_absolute():
        resolved = path.parent / resolved
    return Setting(str(resolved), str(path))


def user_default(name: str) -> Setting:
    """The user's default for `name` ("scheme" or "policy"): environment, then config file."""
    env = os.environ.get(ENVIRONMENT[name], "").strip()
    if env:
        return Setting(env, ENVIRONMENT[name])
    return _from_file(name)

"""Datadis credentials and per-supply settings, from the environment and an optional YAML file.

Each community manager has one Datadis account (a NIF and a password); members either share
their supplies with it through ``authorizedNif`` or the community uses its own account. So
credentials are per community, with a default account for single-community installs:

- environment: ``IOE_DATADIS_USERNAME``, ``IOE_DATADIS_PASSWORD`` or
  ``IOE_DATADIS_PASSWORD_FILE``; per community ``IOE_DATADIS_<ID>_USERNAME`` etc., where
  ``<ID>`` is the community id upper-cased with other characters as ``_``
  (``ce-benimaclet`` → ``IOE_DATADIS_CE_BENIMACLET_PASSWORD``);
- ``--config`` / ``IOE_DATADIS_CONFIG`` YAML::

      base_url: https://datadis.es
      communities:
        ce-benimaclet:
          username: B12345678
          password_file: /etc/ioe/datadis-benimaclet   # never the password itself in git
          supplies:
            ES0021000000000001RK: {distributor_code: "2", point_type: 5,
                                   authorized_nif: 12345678Z}

Passwords are read from files or the environment, never from the YAML, so the YAML can be
committed.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from connectors.datadis.client import DEFAULT_TIMEOUT_S, PUBLIC_BASE_URL
from ioe.settings import Settings


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class SupplyConfig:
    distributor_code: str | None = None
    point_type: int | None = None
    authorized_nif: str | None = None


@dataclass(frozen=True)
class Account:
    username: str
    password: str = field(repr=False)
    authorized_nif: str | None = None

    def __repr__(self) -> str:  # never print credentials, even in a debugger dump
        return "Account(username=[secret], password=[secret])"


@dataclass
class DatadisConfig:
    base_url: str = PUBLIC_BASE_URL
    timeout_s: float = DEFAULT_TIMEOUT_S
    api_version: int = 2
    state_dir: Path = Path(".local/datadis")
    accounts: dict[str, Account] = field(default_factory=dict)
    default_account: Account | None = None
    supplies: dict[str, SupplyConfig] = field(default_factory=dict)

    def account(self, community_id: str) -> Account | None:
        return self.accounts.get(community_id) or self.default_account

    def supply(self, cups: str) -> SupplyConfig:
        return self.supplies.get(cups) or self.supplies.get(cups[:20]) or SupplyConfig()


def env_name(community_id: str) -> str:
    return re.sub(r"[^A-Z0-9]", "_", community_id.upper())


def read_password_file(path: str | Path) -> str:
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"cannot read password file {path}: {exc.strerror}") from None


def _account_from(values: Mapping[str, Any], where: str) -> Account | None:
    username = values.get("username")
    if not username:
        return None
    password = values.get("password")
    if not password and values.get("password_file"):
        password = read_password_file(str(values["password_file"]))
    if not password:
        raise ConfigError(f"{where}: username given but no password (use the environment "
                          "or a password file)")
    return Account(str(username), str(password), values.get("authorized_nif") or None)


def _env_account(env: Mapping[str, str], prefix: str) -> Account | None:
    return _account_from({
        "username": env.get(f"{prefix}USERNAME"),
        "password": env.get(f"{prefix}PASSWORD"),
        "password_file": env.get(f"{prefix}PASSWORD_FILE"),
    }, f"environment {prefix}*")


def load_config(path: str | Path | None, settings: Settings,
                env: Mapping[str, str] | None = None) -> DatadisConfig:
    env = os.environ if env is None else env
    path = path or env.get("IOE_DATADIS_CONFIG")
    document: dict[str, Any] = {}
    if path:
        try:
            document = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read Datadis config {path}: {exc}") from None
        if not isinstance(document, dict):
            raise ConfigError(f"{path}: expected a mapping")
    config = DatadisConfig(
        base_url=str(env.get("IOE_DATADIS_BASE_URL") or document.get("base_url")
                     or PUBLIC_BASE_URL),
        timeout_s=float(env.get("IOE_DATADIS_TIMEOUT_S") or document.get("timeout_s")
                        or DEFAULT_TIMEOUT_S),
        api_version=int(env.get("IOE_DATADIS_API_VERSION") or document.get("api_version") or 2),
        state_dir=Path(env.get("IOE_DATADIS_STATE_DIR") or document.get("state_dir")
                       or settings.local_dir / "datadis"),
        default_account=_env_account(env, "IOE_DATADIS_"),
    )
    communities = document.get("communities") or {}
    for cid, values in communities.items():
        values = values or {}
        account = _account_from(values, f"{path}: community {cid}")
        if account is None:
            account = _env_account(env, f"IOE_DATADIS_{env_name(cid)}_")
        if account is not None:
            config.accounts[str(cid)] = account
        for cups, supply in (values.get("supplies") or {}).items():
            supply = supply or {}
            config.supplies[str(cups).upper()] = SupplyConfig(
                distributor_code=(str(supply["distributor_code"])
                                  if supply.get("distributor_code") is not None else None),
                point_type=int(supply["point_type"]) if supply.get("point_type") else None,
                authorized_nif=supply.get("authorized_nif") or None)
    return config


def community_account(config: DatadisConfig, community_id: str,
                      env: Mapping[str, str] | None = None) -> Account | None:
    """The account of a community: YAML, then ``IOE_DATADIS_<ID>_*``, then the default."""
    env = os.environ if env is None else env
    return (config.accounts.get(community_id)
            or _env_account(env, f"IOE_DATADIS_{env_name(community_id)}_")
            or config.default_account)

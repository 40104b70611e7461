"""Reads the grant file (``GATEWAY_GRANTS_FILE``, default the shipped ``data/grants.yaml``)."""
from __future__ import annotations

from pathlib import Path

import yaml

from shared.core import config
from services.gateway.domain.grants import Grants, parse_grants

SHIPPED = Path(__file__).resolve().parents[1] / "data" / "grants.yaml"


def grants_path() -> Path:
    return Path(config.env("GATEWAY_GRANTS_FILE", str(SHIPPED)))


def load_grants(path: Path | None = None) -> Grants:
    """The grants; ``config.ConfigError`` names the file and what is wrong with it."""
    path = path or grants_path()
    try:
        return parse_grants(yaml.safe_load(path.read_text()))
    except (OSError, yaml.YAMLError, ValueError) as error:
        raise config.ConfigError(f"GATEWAY_GRANTS_FILE {path}: {error}") from error

"""Where nbllm keeps its configuration. Cheap to import: `%load_ext nbllm` asks whether a
saved providers file exists before it loads anything heavier."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

from nbllm import _constants


def config_dir() -> Path:
    """Where nbllm keeps its config: ``$NBLLM_CONFIG_DIR`` or the platform's user config dir."""
    override = os.environ.get(_constants.CONFIG_DIR_ENV)
    if override:
        return Path(override).expanduser()
    return Path(platformdirs.user_config_dir("nbllm", appauthor=False))


def default_config_path() -> Path:
    """The file `%llm_provider save` writes and `%load_ext nbllm` loads."""
    return config_dir() / _constants.CONFIG_FILE_NAME

"""Configuration: one loader for every job, test and notebook."""

from carelake.config.loader import (
    Config,
    ConfigError,
    JoinedColumn,
    SourceEntity,
    SourceSystem,
    load_config,
)

__all__ = ["Config", "ConfigError", "JoinedColumn", "SourceEntity", "SourceSystem", "load_config"]

"""Settings, read once at the edge (CLI or `create_app`) and passed down: `Settings`, made of
the groups in `tongkuan.config.groups` and `tongkuan.config.serving`, each read by the parts it configures."""

from tongkuan.config.base import parse_apps, parse_rate_limits
from tongkuan.config.groups import GROUPS
from tongkuan.config.serving import DEFAULT_MAX_PIXELS, DEFAULT_UPLOAD_MAX_BYTES, LOOPBACK_HOSTS
from tongkuan.config.settings import FIELDS, GROUP_OF, NOT_SETTINGS, SECRET_SETTINGS, Settings

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_UPLOAD_MAX_BYTES",
    "FIELDS",
    "GROUPS",
    "GROUP_OF",
    "LOOPBACK_HOSTS",
    "NOT_SETTINGS",
    "SECRET_SETTINGS",
    "Settings",
    "parse_apps",
    "parse_rate_limits",
]

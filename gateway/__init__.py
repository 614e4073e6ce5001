"""Data plane of mcp-gateway, and the process that composes both planes."""

from settings_api import __version__

__all__ = ["__version__"]

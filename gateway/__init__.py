"""Data plane of mcp-gateway, and the process that composes both planes."""

from mcp_core.version import __version__

__all__ = ["__version__"]

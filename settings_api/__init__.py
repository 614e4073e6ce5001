"""Control plane of mcp-gateway: the settings API, and the store and keys both planes use."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("mcp-gateway")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

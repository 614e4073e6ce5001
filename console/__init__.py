"""The admin console: the settings API as server-rendered web pages (docs/console.md)."""

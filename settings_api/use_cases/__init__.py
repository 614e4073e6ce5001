"""The settings API's use cases, one module per concept, behind the `SettingsService` facade.

Each mutation runs in one store transaction together with its audit event, so nothing is half
done; the integration's settings row lock serializes enabling and rotation, and the schema's
one-live-key index backs that up. Changes are published after commit (publishing.py).
"""

-- Credentials in an upstream URL (a password, query values) are encrypted at rest:
-- configs.upstream_url now holds the redacted form, this column the Fernet token of the whole
-- URL (NULL: the URL has no secrets, or was stored before; settings_api/secrets_box.py).
ALTER TABLE configs ADD COLUMN upstream_url_sealed text;

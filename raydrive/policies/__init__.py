"""Built-in policies. Each module is a plugin registered through ``raydrive.plugins``, exactly like a
third-party one, so each can be replaced or blocked (``RAYDRIVE_DISABLE_PLUGINS``)."""

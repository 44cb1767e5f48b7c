"""A plugin module that raises at import everywhere (not an ImportError)."""

raise RuntimeError("module-level boom: missing MODEL_DIR")

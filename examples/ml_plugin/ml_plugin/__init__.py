"""An example plugin: a small end-to-end ML pipeline (generate -> preprocess -> train -> evaluate)."""

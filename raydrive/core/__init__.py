"""raydrive's core: action model, executor protocols, registry, runtime-env builder, errors."""

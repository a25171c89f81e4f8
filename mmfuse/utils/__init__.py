"""The bottom room: small helpers every other room may use (atomic file writes, compiled-kernel loading, quiet model
loading, text normalization). Nothing here imports another mmfuse room."""

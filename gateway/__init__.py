"""The async command gateway: accept writes at once, apply them in the background, lose nothing."""

"""Plugins of the gateway: the hook contract, the plugin manager and the built-in stores."""

"""The plugin layer: hook markers, the hook contract (specs), the plugin host, tracing and the typed facade."""

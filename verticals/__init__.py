"""Plug-in verticals. Each is a Django app that registers one Vertical in its AppConfig.ready()."""

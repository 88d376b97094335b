"""Notifications: what a person is sent, and how it reaches them.

  notifiers/channels.py  `Message`, `ChannelResult`, `channel_class`: plain types, light
  notifiers/messages.py  rendering each event into its rich and SMS forms (pure)
  notifiers/delivery.py  sending through Apprise -- the one module that imports it

This package's own import is light on purpose (it imports nothing), so that the
pure core can use the types without loading Apprise.
"""

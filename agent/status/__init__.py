"""What customers see: components, public notices, uptime, subscriptions (no web here)."""

"""onwatch: the agent (config, scheduler, detection, incidents, escalation, store, web, CLI)."""

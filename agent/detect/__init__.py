"""Pure detection: CheckResults in, Signals out; the time is an argument."""

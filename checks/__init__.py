"""The check kinds: one module per kind (http, tcp, tls, smtp, imap, pop3, mailflow,
dns, icmp, heartbeat, host), plus their shared plumbing (the `_`-prefixed modules).

Where things are:
  checks/result.py    `CheckResult`, `ErrorKind`: light, what the pure core reads
  checks/base.py      `ProbeContext`, `Probe`, `run_with_deadline`: running a probe
  checks/registry.py  `KINDS`, `Kind`: the table keyed by the config's `type`

This package's own import is light on purpose (it imports nothing): importing
`checks.result` must not import every probe's libraries.
"""

"""A remote probe's results on disk until the central has them, in order, bounded.

Layout in `<state_dir>/buffer/`:
- `current.jsonl`: results taken and not yet in a batch, one JSON line each,
  appended (and flushed) as each run ends;
- `batch-<seq>.json`: a batch made from them and not yet accepted, its
  sequence number fixed when it was made, so a retry after a lost answer is
  the same batch (the central answers it as a duplicate and nothing repeats);
- `seq`: the last sequence number used. A new probe (or one whose buffer was
  wiped) starts from the time in milliseconds, so it is always above what the
  central accepted before.

Bounds (both from probe.toml): `buffer_max` bytes over all files and
`buffer_max_age` seconds for a result. Past either, the oldest results are
dropped first, with a log line saying how many and from when: the newest
results are what the central needs to page now; the oldest are history.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import IO, Any

import structlog

from agent import probe_wire

log = structlog.get_logger(__name__)

MAX_BATCH = 500


class Buffer:
    def __init__(self, root: Path, probe: str, *, max_bytes: int, max_age: float) -> None:
        self.dir = root / "buffer"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.probe = probe
        self.max_bytes = max_bytes
        self.max_age = max_age
        self._current = self.dir / "current.jsonl"
        self._seq_file = self.dir / "seq"
        self._pending_lines = self._count_lines()
        self.dropped = 0
        #: Kept open between results (a run costs a write and a flush, not an open).
        self._fh: IO[str] | None = None
        self._bytes = self.size()

    def _count_lines(self) -> int:
        try:
            with self._current.open("rb") as f:
                return sum(1 for _ in f)
        except FileNotFoundError:
            return 0

    def add(self, item: dict[str, Any]) -> None:
        line = json.dumps(item, separators=(",", ":")) + "\n"
        if self._fh is None:
            self._fh = self._current.open("a", encoding="utf-8")
        self._fh.write(line)
        self._fh.flush()  # in the kernel's hands: a crash of the probe loses nothing
        self._pending_lines += 1
        self._bytes += len(line)
        if self._bytes > self.max_bytes:
            self._bytes = self.size()
            self._bound()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def waiting(self) -> dict[str, int]:
        """What the central has not taken yet, for log lines: batches made (up to
        MAX_BATCH results each) and results not yet in one. Cheap: no batch is read."""
        return {"batches": len(self._batches()), "results": self._pending_lines}

    def _batches(self) -> list[Path]:
        return sorted(self.dir.glob("batch-*.json"), key=lambda p: int(p.stem.split("-")[1]))

    def _read_batch(self, path: Path) -> list[dict[str, Any]]:
        try:
            doc = json.loads(path.read_bytes())
            results = doc.get("results", [])
            return results if isinstance(results, list) else []
        except (OSError, ValueError):
            return []

    def next_batch(self, now: float) -> tuple[int, bytes] | None:
        """The oldest batch to send (seq, body): one already made, else a new one from
        the current results; None when nothing waits."""
        batches = self._batches()
        if batches:
            path = batches[0]
            return int(path.stem.split("-")[1]), path.read_bytes()
        items = self._take_current(now)
        if not items:
            return None
        seq = self._next_seq()
        body = probe_wire.encode_batch(self.probe, seq, items)
        tmp = self.dir / f".batch-{seq}.tmp"
        tmp.write_bytes(body)
        os.replace(tmp, self.dir / f"batch-{seq}.json")
        return seq, body

    def done(self, seq: int) -> None:
        """The central has batch `seq` (accepted, or a duplicate of one it had)."""
        (self.dir / f"batch-{seq}.json").unlink(missing_ok=True)
        self._bytes = self.size()

    def _take_current(self, now: float) -> list[dict[str, Any]]:
        self.close()
        try:
            lines = self._current.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        items: list[dict[str, Any]] = []
        for line in lines:
            try:
                item = json.loads(line)
            except ValueError:
                continue  # a line cut short by a crash
            if isinstance(item, dict) and now - float(item.get("checked_at", 0)) <= self.max_age:
                items.append(item)
            else:
                self._drop(1, "older than buffer_max_age")
        take, rest = items[:MAX_BATCH], items[MAX_BATCH:]
        if rest:
            tmp = self.dir / ".current.tmp"
            tmp.write_text("".join(json.dumps(i, separators=(",", ":")) + "\n" for i in rest))
            os.replace(tmp, self._current)
        else:
            self._current.unlink(missing_ok=True)
        self._pending_lines = len(rest)
        return take

    def _next_seq(self) -> int:
        try:
            last = int(self._seq_file.read_text().strip() or 0)
        except (FileNotFoundError, ValueError):
            last = 0
        seq = max(last + 1, int(time.time() * 1000))
        tmp = self.dir / ".seq.tmp"
        tmp.write_text(str(seq))
        os.replace(tmp, self._seq_file)
        return seq

    def size(self) -> int:
        return sum(p.stat().st_size for p in self.dir.iterdir() if p.is_file())

    def _bound(self) -> None:
        """Past buffer_max: drop the oldest whole batches first."""
        if self.size() <= self.max_bytes:
            return
        for path in self._batches():
            n = len(self._read_batch(path))
            path.unlink(missing_ok=True)
            self._drop(n, "over buffer_max")
            if self.size() <= self.max_bytes:
                return
        # Only results not yet batched are left: keep the newest half.
        self.close()
        lines = self._current.read_text(encoding="utf-8").splitlines(keepends=True)
        keep = lines[len(lines) // 2:]
        tmp = self.dir / ".current.tmp"
        tmp.write_text("".join(keep), encoding="utf-8")
        os.replace(tmp, self._current)
        self._drop(len(lines) - len(keep), "over buffer_max")
        self._pending_lines = len(keep)
        self._bytes = self.size()

    def _drop(self, n: int, why: str) -> None:
        if n:
            self.dropped += n
            log.warning("probe_buffer_dropped", results=n, why=why,
                        dropped_total=self.dropped)

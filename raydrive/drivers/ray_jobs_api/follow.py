"""Following a job's log through the dashboard (``/api/v0/logs/stream``), missing no line.

Ray's websocket tail sleeps a second at every end of file, and some versions drop the last lines
(ray#46413, ray#48701). Here the log file is streamed over HTTP; when the job ends, whatever the
stream had not delivered yet is fetched by byte offset, so no line is lost, and a job that never
started (runtime env setup failed) yields Ray's error message.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

from raydrive.core.errors import RaydriveError
from raydrive.drivers.ray_jobs_api.dashboard import AsyncDashboard, JobInfo, httpx

__all__ = ["DRIVER_LOG", "follow", "iterate_in_thread", "poll_delay", "text_lines"]

# Ray's name for a job's driver log, relative to the node's log directory (JOB_LOGS_PATH_TEMPLATE).
DRIVER_LOG = "job-driver-{submission_id}.log"


def poll_delay(elapsed: float, cap: float, first: float = 0.05) -> float:
    """Seconds to the next status poll: 2.5% of the time waited so far, within [first, cap].

    The end of a job is then noticed at most ~2.5% (or ``first``) late: short jobs return fast
    (a 2 s job: within 50 ms, as a raw 50 ms polling loop), long ones cost the dashboard one cheap
    request per ``cap`` seconds.
    """
    return max(first, min(cap, elapsed / 40))


def _lines(buf: bytearray) -> list[str]:
    """Take the complete lines out of ``buf`` (bytes), each decoded with its newline."""
    end = buf.rfind(b"\n")
    if end < 0:
        return []
    head = bytes(buf[: end + 1])
    del buf[: end + 1]
    return [line.decode("utf-8", errors="replace") + "\n" for line in head.split(b"\n")[:-1]]


def text_lines(text: str) -> list[str]:
    return [line if line.endswith("\n") else line + "\n" for line in text.splitlines(keepends=True)]


def _rest(buf: bytearray) -> list[str]:
    out = _lines(buf)
    if buf:
        out.append(buf.decode("utf-8", errors="replace") + "\n")
        buf.clear()
    return out


async def follow(
    api: AsyncDashboard,
    job_id: str,
    job: Callable[[str], Awaitable[JobInfo]],
    *,
    timeout: float,
    interval: float,
) -> AsyncIterator[str]:
    """Yield the job's log lines until it has ended and every line is out, or for ``timeout`` s.

    ``job`` reads the job's info (raising JobNotFoundError, reporting the end to the executor).
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    filename = DRIVER_LOG.format(submission_id=job_id)
    info = await job(job_id)
    # Until the driver runs, Ray writes the job's log on the head node (the job manager's):
    # "Runtime env is setting up.", the setup output when the cluster streams it there, and the
    # error when the setup fails.
    node = info.driver_node_id or await api.head_node()
    tail: _Tail | None = None
    buf = bytearray()
    started = next_check = loop.time()
    try:
        while True:
            if loop.time() >= next_check:
                next_check = loop.time() + poll_delay(loop.time() - started, 1.0, 0.1)
                info = await job(job_id)
                driver = info.driver_node_id
                if driver and driver != node:
                    # The driver runs on another node than the one followed: its own file.
                    if tail is not None:
                        await tail.close()
                        buf += tail.drain()
                        for line in _rest(buf):
                            yield line
                        tail = None
                    node = driver
                if info.terminal:
                    break
                if node and tail is None:
                    tail = _Tail(api, node, filename, interval)
            now = loop.time()
            if now >= deadline:
                return
            wait = min(next_check, deadline) - now
            chunk = await tail.get(wait) if tail is not None else await asyncio.sleep(wait)
            if chunk:
                buf += chunk
                for line in _lines(buf):
                    yield line
    finally:
        if tail is not None:
            await tail.close()
    # Ended: whatever the stream had not delivered yet, by byte offset.
    rest = None
    if node:
        if tail is not None:
            buf += tail.drain()
        rest = await api.read_file(node, filename, skip=tail.offset if tail is not None else 0)
        buf += rest or b""
    for line in _rest(buf):
        yield line
    seen = rest is not None or (tail is not None and tail.found)
    if not seen and info.status != "SUCCEEDED" and info.message:
        # No log file at all (never started, e.g. stopped while pending): Ray's reason.
        for line in text_lines(info.message):
            yield line


class _Tail:
    """Follows one log file on one node (``/api/v0/logs/stream``), reconnecting where it broke off.

    ``offset`` counts the bytes handed out; a new connection starts at the top of the file and
    skips them, so a reconnect neither repeats nor loses anything (log files only grow).
    """

    def __init__(self, api: AsyncDashboard, node: str, filename: str, interval: float) -> None:
        self.api = api
        self.node = node
        self.filename = filename
        self.interval = interval
        self.offset = 0
        self.found = False
        self._chunks: asyncio.Queue[bytes] = asyncio.Queue()
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        params = {
            "node_id": self.node,
            "filename": self.filename,
            "lines": "-1",
            "interval": str(self.interval),
            "timeout": "86400",
        }
        while True:
            try:
                async with self.api.stream("GET", "/api/v0/logs/stream", params=params) as response:
                    if response.status_code == 200:
                        self.found = True
                        skip = self.offset
                        async for chunk in response.aiter_bytes():
                            if skip >= len(chunk):
                                skip -= len(chunk)
                                continue
                            chunk = chunk[skip:]
                            skip = 0
                            self.offset += len(chunk)
                            self._chunks.put_nowait(chunk)
                    else:
                        await response.aread()  # not there yet (the job has not started)
            except httpx.TransportError:
                pass  # the stream broke off: reconnect below
            await asyncio.sleep(self.interval)

    async def get(self, timeout: float) -> bytes:
        """The next bytes, or b"" after ``timeout`` seconds; everything queued at once."""
        if self._task.done() and not self._task.cancelled() and self._task.exception() is not None:
            raise self._task.exception()  # type: ignore[misc]
        try:
            first = await asyncio.wait_for(self._chunks.get(), timeout=max(0.0, timeout))
        except asyncio.TimeoutError:
            return b""
        return first + self.drain()

    def drain(self) -> bytes:
        out = bytearray()
        while not self._chunks.empty():
            out += self._chunks.get_nowait()
        return bytes(out)

    async def close(self) -> None:
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass
        except RaydriveError:
            raise
        except Exception:  # the follow is over; a late transport error changes nothing
            pass


def iterate_in_thread(make: Callable[[], AsyncIterator[str]]) -> Iterator[str]:
    """Run an async iterator on a private thread and event loop; yield its items here.

    A private loop (not ``asyncio.run`` here) keeps the sync API usable inside a running loop.
    The thread starts with the first ``next()``; leaving the loop early cancels the producer.
    """
    items: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=1024)
    closed = threading.Event()

    def put(item: tuple[str, Any]) -> bool:
        while not closed.is_set():
            try:
                items.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    async def pump() -> None:
        try:
            async for line in make():
                if not put(("line", line)):
                    return
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            put(("error", exc))
            return
        put(("end", None))

    loop = asyncio.new_event_loop()
    task = loop.create_task(pump())

    def run() -> None:
        try:
            loop.run_until_complete(task)
        except BaseException:  # cancelled by the consumer, or reported through the queue
            pass
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    thread = threading.Thread(target=run, name="raydrive-jobs-api-logs", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = items.get()
            if kind == "line":
                yield value
            elif kind == "error":
                raise value
            else:
                return
    finally:
        closed.set()
        if thread.is_alive():
            with contextlib.suppress(RuntimeError):  # the loop has just closed
                loop.call_soon_threadsafe(task.cancel)
            thread.join(timeout=10)

"""Fork-server run inside the jail: reads job frames, runs each in a forked child, replies.

Standard library only and Python 3.11 compatible: it runs on the jail's runtime interpreter and
must never import the project. Frames are a 4-byte big-endian length plus JSON, on the file
descriptors that were stdin/stdout when the server started; those are moved away from 0/1/2 so a
job's prints can never reach the protocol.
"""

import contextlib
import ctypes
import gc
import hashlib
import json
import mmap
import os
import resource
import select
import signal
import struct
import sys
import time
import traceback
import types

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from values import canonical_json, json_stats  # noqa: E402

_HEADER = struct.Struct(">I")
_RESULT_HEAD = struct.Struct("=I")
# Room for the reply's envelope (error text, captured stdout, JSON escaping) beyond the output.
_ENVELOPE = 65536
_MAX_FRAME = 64 * 1024 * 1024
_PR_SET_DUMPABLE = 4
_SELF_PATH = os.path.abspath(__file__)
_JOB_MODULE = "__codeio_job__"


class _CallTimeout(BaseException):
    """Raised by the per-call alarm; a BaseException so a bare `except Exception` can't eat it."""


class _BoundedWriter:
    """A sys.stdout stand-in that keeps only the first few KB of what the job prints."""

    def __init__(self, limit):
        self.limit = limit
        self.parts = []
        self.size = 0

    def write(self, text):
        if self.size < self.limit:
            chunk = str(text)[: self.limit - self.size]
            self.parts.append(chunk)
            self.size += len(chunk)
        return len(text)

    def flush(self):
        pass

    def isatty(self):
        return False


def _read_exact(fd, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = os.read(fd, n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def _read_frame(fd):
    head = _read_exact(fd, _HEADER.size)
    if head is None:
        return None
    (size,) = _HEADER.unpack(head)
    if size > _MAX_FRAME:
        raise ValueError(f"frame of {size} bytes exceeds {_MAX_FRAME}")
    body = _read_exact(fd, size)
    return None if body is None else json.loads(body)


def _write_frame(fd, obj):
    data = json.dumps(obj).encode("utf-8")
    data = _HEADER.pack(len(data)) + data
    while data:
        written = os.write(fd, data)
        data = data[written:]


class Server:
    """One jail's job loop."""

    def __init__(self, cfg, proto_in, proto_out):
        self.cfg = cfg
        self.proto_in = proto_in
        self.proto_out = proto_out
        self.workdir = cfg["workdir"]
        # Jobs inherit the working folder instead of each paying a chdir.
        os.chdir(self.workdir)
        # As pid 1 of the jail's pid namespace, kill(-1) reaches every process a job could have
        # left behind and never the server; outside a jail (unsafe mode) it would hit the host
        # user's processes, so there only the job's process group is killed.
        self.is_init = os.getpid() == 1

    def serve(self):
        _write_frame(self.proto_out, {"ready": True, "pid1": self.is_init})
        while True:
            req = _read_frame(self.proto_in)
            if req is None:
                return
            started = time.monotonic()
            reply = self.run_job(req)
            reply["id"] = req.get("id")
            reply["duration_ms"] = round((time.monotonic() - started) * 1000.0, 3)
            _write_frame(self.proto_out, reply)

    def run_job(self, req):
        limit = int(req["max_output_bytes"])
        # The child leaves its reply in shared memory rather than a pipe, so the server sleeps
        # once per job (until the child exits) instead of waking for data, then for the exit:
        # on a busy machine every extra wake-up waits for a CPU. A fresh mapping per job, so no
        # job can read what an earlier one left in it.
        result = mmap.mmap(-1, _RESULT_HEAD.size + limit + _ENVELOPE)
        try:
            pid = os.fork()
            if pid == 0:
                try:
                    _child(req, result, self.proto_in, self.proto_out)
                finally:
                    os._exit(70)
            pidfd = os.pidfd_open(pid)
            try:
                ready, _, _ = select.select([pidfd], [], [], float(req["wall_timeout_s"]))
            finally:
                os.close(pidfd)
            if not ready:
                _kill_quietly(pid)
            wait_status = self.reap(pid)
            # Only with everything the job started dead is what it left in `result` final.
            self.cleanup(pid)
            if not ready:
                return {
                    "status": "timeout",
                    "error": f"wall-clock limit of {req['wall_timeout_s']} s",
                }
            return _read_result(result) or _status_from_wait(wait_status, req)
        finally:
            result.close()

    def reap(self, pid):
        try:
            _, wait_status = os.waitpid(pid, 0)
        except ChildProcessError:
            return None
        return wait_status

    def cleanup(self, pid):
        if self.is_init:
            while True:
                try:
                    os.kill(-1, signal.SIGKILL)
                except ProcessLookupError:
                    # Nothing left running: reap what already died without blocking, and stop.
                    with contextlib.suppress(ChildProcessError):
                        while os.waitpid(-1, os.WNOHANG)[0]:
                            pass
                    break
                try:
                    os.waitpid(-1, 0)
                except ChildProcessError:
                    break
        else:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
        _wipe(self.workdir)


def _read_result(result):
    """The reply the child left in shared memory, or None if it left none."""
    (size,) = _RESULT_HEAD.unpack(result[: _RESULT_HEAD.size])
    if size == 0:
        return None
    reply = None
    if size <= len(result) - _RESULT_HEAD.size:
        with contextlib.suppress(ValueError):
            reply = json.loads(result[_RESULT_HEAD.size : _RESULT_HEAD.size + size])
    if not isinstance(reply, dict):
        return {"status": "invalid_output", "error": "child wrote a malformed result"}
    return reply


def _send_result(result, reply):
    # Body first, length last: a child killed half-way leaves no reply rather than half a one.
    data = json.dumps(reply).encode("utf-8")
    room = len(result) - _RESULT_HEAD.size
    if len(data) > room:
        error = f"result larger than {room - _ENVELOPE} bytes"
        data = json.dumps({"status": "output_limit", "error": error}).encode("utf-8")
    result[_RESULT_HEAD.size : _RESULT_HEAD.size + len(data)] = data
    result[: _RESULT_HEAD.size] = _RESULT_HEAD.pack(len(data))


def _kill_quietly(pid):
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _status_from_wait(wait_status, req):
    if wait_status is None:
        return {"status": "killed", "error": "job process vanished"}
    if os.WIFSIGNALED(wait_status):
        sig = os.WTERMSIG(wait_status)
        if sig == signal.SIGXCPU:
            return {"status": "timeout", "error": f"CPU-time limit of {req['cpu_s']} s"}
        if sig == signal.SIGKILL:
            return {
                "status": "memory",
                "error": "killed by SIGKILL (the memory cgroup's OOM killer, most likely)",
            }
        return {"status": "killed", "error": f"killed by signal {signal.Signals(sig).name}"}
    code = os.WEXITSTATUS(wait_status)
    return {"status": "killed", "error": f"job process exited with code {code} without a result"}


def _wipe(root):
    try:
        names = os.listdir(root)
    except OSError:
        return
    for name in names:
        _remove(os.path.join(root, name))


def _remove(path):
    try:
        if os.path.isdir(path) and not os.path.islink(path):
            os.chmod(path, 0o700)
            for name in os.listdir(path):
                _remove(os.path.join(path, name))
            os.rmdir(path)
        else:
            os.unlink(path)
    except OSError:
        pass


def _child(req, result, proto_in, proto_out):
    job_pid = os.getpid()
    os.setsid()
    os.close(proto_in)
    os.close(proto_out)
    # The server's fd 0 is /dev/null already; fd 2 is the jail's log, which jobs must not fill.
    os.dup2(0, 2)
    mem = int(req["memory_mb"]) * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
    cpu = int(req["cpu_s"])
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    out = _BoundedWriter(8192)
    sys.stdout = out
    sys.stderr = _BoundedWriter(8192)
    _reseed_fresh()
    try:
        reply = _run_iopairs(req) if req.get("kind") == "iopairs" else _run_call(req)
    except MemoryError:
        reply = {"status": "memory", "error": "MemoryError (address-space limit)"}
    except BaseException as exc:  # noqa: BLE001 - user code may raise anything, SystemExit too
        reply = {"status": "exception", "error": _format_exc(exc)}
    if os.getpid() != job_pid:
        # A process the job forked (fork bomb, daemon) must not write a second reply.
        os._exit(0)
    reply["stdout"] = "".join(out.parts)
    _send_result(result, reply)
    os._exit(0)


def _format_exc(exc):
    # Only the job's own frames (and library frames it called) are useful to the reader.
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename != _SELF_PATH]
    tail = "".join(traceback.format_list(frames[-3:]))
    return f"{type(exc).__name__}: {str(exc)[:500]}\n{tail[-1500:]}".rstrip()


def _load(code):
    # A real module in sys.modules: dataclasses, typing.get_type_hints and pickle look the
    # defining module up there. Not "__main__", so `if __name__ == "__main__":` blocks stay idle.
    module = types.ModuleType(_JOB_MODULE)
    module.__file__ = "<job>"
    sys.modules[_JOB_MODULE] = module
    exec(compile(code, "<job>", "exec"), module.__dict__)  # noqa: S102 - this is the sandbox
    return module.__dict__


def _call(fn, args):
    if isinstance(args, dict):
        return fn(**args)
    if isinstance(args, list):
        return fn(*args)
    raise TypeError(f"input must be a JSON object or array, got {type(args).__name__}")


def _run_call(req):
    namespace = _load(req["code"])
    fn = namespace.get(req["call"])
    if not callable(fn):
        return {"status": "exception", "error": f"NameError: no callable named {req['call']!r}"}
    result = _call(fn, req["input"])
    try:
        text, conversions = canonical_json(result)
    except (ValueError, RecursionError) as exc:
        return {"status": "invalid_output", "error": str(exc)[:500]}
    if len(text.encode("utf-8")) > int(req["max_output_bytes"]):
        return {"status": "output_limit", "error": f"output larger than {req['max_output_bytes']}"}
    return {"status": "ok", "output": text, "conversions": conversions}


def _reseed_fresh():
    import random

    random.seed()
    np = sys.modules.get("numpy")
    if np is not None:
        np.random.seed(int.from_bytes(os.urandom(4), "little"))


def _reseed_draw(key, draw):
    import random

    digest = hashlib.sha256(f"{key}:{draw}".encode()).digest()
    random.seed(int.from_bytes(digest[:8], "big"))
    np = sys.modules.get("numpy")
    if np is not None:
        np.random.seed(int.from_bytes(digest[8:12], "big"))


def _on_alarm(signum, frame):
    raise _CallTimeout()


def _timed(seconds, fn, *args, **kwargs):
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        return fn(*args, **kwargs)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


def _too_large(text, value, lim):
    if len(text.encode("utf-8")) > lim["max_bytes"]:
        return True
    items, longest, _ = json_stats(value)
    return items > lim["max_items"] or longest > lim["max_str_len"]


def _run_iopairs(req):
    lim = req["limits"]
    counts = {
        "generator_calls": 0,
        "generator_errors": 0,
        "dropped_invalid_input": 0,
        "dropped_duplicate_input": 0,
        "dropped_too_large_input": 0,
        "dropped_exception": 0,
        "dropped_timeout": 0,
        "dropped_memory": 0,
        "dropped_none_output": 0,
        "dropped_invalid_output": 0,
        "dropped_too_large_output": 0,
        "dropped_nonfinite": 0,
    }
    if "numpy" in req["code"] and "numpy" not in sys.modules:
        # Seeded per draw only if imported before the draws, even when the generator imports
        # it lazily inside a function.
        with contextlib.suppress(ImportError):
            import numpy  # noqa: F401
    namespace = _load(req["code"])
    gen = namespace.get("input_generator")
    fn = namespace.get("main_solution")
    if not callable(gen) or not callable(fn):
        missing = "input_generator" if not callable(gen) else "main_solution"
        return {"status": "exception", "error": f"NameError: no callable named {missing!r}"}
    signal.signal(signal.SIGALRM, _on_alarm)
    call_timeout = float(req["call_timeout_s"])
    deadline = time.monotonic() + float(lim["time_budget_s"])
    pairs = []
    seen = set()
    conversions = set()
    first_error = None
    for draw in range(int(lim["max_generator_calls"])):
        if len(pairs) >= lim["max_pairs"] or time.monotonic() > deadline:
            break
        counts["generator_calls"] += 1
        _reseed_draw(req["seed_key"], draw)
        try:
            raw = _timed(call_timeout, gen)
            text, conv = canonical_json(raw)
        except (Exception, _CallTimeout) as exc:  # noqa: BLE001 - generator bugs are data
            counts["generator_errors"] += 1
            first_error = first_error or _format_exc(exc)
            continue
        value = json.loads(text)
        if not isinstance(value, dict):
            counts["dropped_invalid_input"] += 1
            continue
        if _too_large(text, value, lim) or json_stats(value)[2]:
            counts["dropped_too_large_input"] += 1
            continue
        if text in seen:
            counts["dropped_duplicate_input"] += 1
            continue
        seen.add(text)
        _reseed_fresh()
        try:
            out = _timed(call_timeout, fn, **value)
        except _CallTimeout:
            counts["dropped_timeout"] += 1
            continue
        except MemoryError:
            counts["dropped_memory"] += 1
            continue
        except Exception as exc:  # noqa: BLE001
            counts["dropped_exception"] += 1
            first_error = first_error or _format_exc(exc)
            continue
        if out is None:
            counts["dropped_none_output"] += 1
            continue
        try:
            out_text, out_conv = canonical_json(out)
        except (ValueError, RecursionError):
            counts["dropped_invalid_output"] += 1
            continue
        out_value = json.loads(out_text)
        if _too_large(out_text, out_value, lim):
            counts["dropped_too_large_output"] += 1
            continue
        if json_stats(out_value)[2]:
            counts["dropped_nonfinite"] += 1
            continue
        conversions.update(conv)
        conversions.update(out_conv)
        pairs.append([text, out_text])
    return {
        "status": "ok",
        "pairs": pairs,
        "counts": counts,
        "error": first_error,
        "conversions": sorted(conversions),
    }


def main():
    proto_in = os.dup(0)
    proto_out = os.dup(1)
    null = os.open("/dev/null", os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.close(null)
    # Not dumpable: a job running under the same uid cannot ptrace the server or open its
    # descriptors through /proc, so it cannot forge replies on the protocol pipes.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)
    cfg = _read_frame(proto_in)
    if cfg is None:
        return 0
    for name in cfg.get("preload", []):
        try:
            __import__(name)
        except Exception as exc:  # noqa: BLE001 - a missing optional module is not fatal
            print(f"forkserver: could not preload {name}: {exc}", file=sys.stderr)
    # The first reseed initialises lazily-built state (numpy's ~15 ms); pay it once, not per job.
    _reseed_fresh()
    # Objects alive now are shared copy-on-write with every job; keep the collector off them.
    gc.freeze()
    Server(cfg, proto_in, proto_out).serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())

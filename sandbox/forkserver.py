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
from values import canonical_json, json_stats, outputs_equal  # noqa: E402

_HEADER = struct.Struct(">I")
# One 32-bit word: the reply's length, and in the top bit which of two slots holds it. A job
# writes each new reply into the slot not in use and then flips the word (one aligned store), so
# a job killed at any moment leaves its last complete reply behind, never half of one.
_RESULT_HEAD = struct.Struct("=I")
_SLOT_BIT = 1 << 31
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
        # The child leaves its reply in shared memory rather than a pipe, so the server sleeps
        # once per job (until the child exits) instead of waking for data, then for the exit:
        # on a busy machine every extra wake-up waits for a CPU. A fresh mapping per job, so no
        # job can read what an earlier one left in it.
        result = _ResultBuffer(int(req["max_output_bytes"]))
        try:
            pid = os.fork()
            if pid == 0:
                try:
                    _child(req, result, self.proto_in, self.proto_out)
                finally:
                    os._exit(70)
            ready = _wait_exit(pid, float(req["wall_timeout_s"]), self.proto_in)
            wait_status = self.reap(pid)
            # Only with everything the job started dead is what it left in `result` final.
            self.cleanup(pid)
            if ready is None:
                # The host is gone (killed): nobody will read the reply, so the jail ends now
                # instead of at the job's wall clock. As pid 1, exiting takes every job along.
                os._exit(0)
            if not ready:
                partial = result.read() if req.get("kind") == "iopairs" else None
                if partial is not None and partial.get("status") == "ok":
                    # What an I/O-pair job made before its wall clock ran out is kept.
                    partial["stopped_by_wall_clock"] = True
                    return partial
                return {
                    "status": "timeout",
                    "error": f"wall-clock limit of {req['wall_timeout_s']} s",
                }
            return result.read() or _status_from_wait(wait_status, req)
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


class _ResultBuffer:
    """Shared memory a forked process leaves its reply in (see _RESULT_HEAD)."""

    def __init__(self, limit):
        self.room = limit + _ENVELOPE
        self.mem = mmap.mmap(-1, _RESULT_HEAD.size + 2 * self.room)
        self.slot = 0

    def write(self, reply):
        data = json.dumps(reply).encode("utf-8")
        if len(data) > self.room:
            error = f"result larger than {self.room - _ENVELOPE} bytes"
            data = json.dumps({"status": "output_limit", "error": error}).encode("utf-8")
        self.slot ^= 1
        start = _RESULT_HEAD.size + self.slot * self.room
        self.mem[start : start + len(data)] = data
        self.mem[: _RESULT_HEAD.size] = _RESULT_HEAD.pack(len(data) | (self.slot * _SLOT_BIT))

    def read(self):
        """The last complete reply written, or None if none was."""
        (word,) = _RESULT_HEAD.unpack(self.mem[: _RESULT_HEAD.size])
        size, slot = word & (_SLOT_BIT - 1), word >> 31
        if size == 0:
            return None
        reply = None
        if size <= self.room:
            start = _RESULT_HEAD.size + slot * self.room
            # A job can write here itself: a reply too deep to decode is malformed, not fatal.
            with contextlib.suppress(ValueError, RecursionError, MemoryError):
                reply = json.loads(self.mem[start : start + size])
        if not isinstance(reply, dict):
            return {"status": "invalid_output", "error": "child wrote a malformed result"}
        return reply

    def close(self):
        self.mem.close()


def _wait_exit(pid, seconds, hangup_fd=None):
    """True if process pid exited within seconds; False (it is killed) if not; None (killed
    too) if the writer of hangup_fd, the host, went away first."""
    pidfd = os.pidfd_open(pid)
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    if hangup_fd is not None:
        # No events asked for: a pipe reports POLLHUP regardless once its last writer closed,
        # and requests already queued behind this job do not wake us.
        poller.register(hangup_fd, 0)
    try:
        events = dict(poller.poll(seconds * 1000.0))
    finally:
        os.close(pidfd)
    if pidfd in events:
        return True
    _kill_quietly(pid)
    return None if events else False


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
    kind = req.get("kind")
    try:
        if kind == "iopairs":
            reply = _run_iopairs(req, lambda partial: _checkpoint(result, job_pid, partial))
        elif kind == "recheck":
            reply = _run_recheck(req)
        else:
            reply = _run_call(req)
    except MemoryError:
        reply = {"status": "memory", "error": "MemoryError (address-space limit)"}
    except BaseException as exc:  # noqa: BLE001 - user code may raise anything, SystemExit too
        reply = {"status": "exception", "error": _format_exc(exc)}
    if os.getpid() != job_pid:
        # A process the job forked (fork bomb, daemon) must not write a second reply.
        os._exit(0)
    reply["stdout"] = "".join(out.parts)
    result.write(reply)
    os._exit(0)


def _checkpoint(result, job_pid, partial):
    if os.getpid() == job_pid:
        result.write(partial)


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
    return _output_reply(_call(fn, req["input"]), int(req["max_output_bytes"]))


def _output_reply(value, limit):
    try:
        text, conversions = canonical_json(value)
    except (ValueError, RecursionError) as exc:
        return {"status": "invalid_output", "error": str(exc)[:500]}
    if len(text.encode("utf-8")) > limit:
        return {"status": "output_limit", "error": f"output larger than {limit}"}
    return {"status": "ok", "output": text, "conversions": conversions}


def _run_recheck(req):
    """Call `call` on each input, each call in a fresh fork of the loaded module, as a fresh
    process would; stop at the first call that fails or disagrees with its expected output.

    Expected outputs only decide when to stop early: the host compares every output again,
    since this reply crosses a pipe the checked code can write to.
    """
    namespace = _load(req["code"])
    fn = namespace.get(req["call"])
    if not callable(fn):
        return {"status": "exception", "error": f"NameError: no callable named {req['call']!r}"}
    results = []
    for args, expected in zip(req["inputs"], req["expected"], strict=True):
        reply = _fresh_call(fn, args, req)
        results.append(reply)
        if reply.get("status") != "ok":
            break
        try:
            same = outputs_equal(json.loads(reply["output"]), json.loads(expected))
        except (TypeError, ValueError, RecursionError, MemoryError):
            break  # a forged reply: the host rejects it
        if not same:
            break
    return {"status": "ok", "results": results}


def _fresh_call(fn, args, req):
    limit = int(req["call_max_output_bytes"])
    result = _ResultBuffer(limit)
    try:
        pid = os.fork()
        if pid == 0:
            try:
                call_pid = os.getpid()
                os.setpgid(0, 0)
                cpu = int(req["call_cpu_s"])
                hard = resource.getrlimit(resource.RLIMIT_CPU)[1]
                if hard != resource.RLIM_INFINITY:
                    cpu = min(cpu, hard - 1)
                resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
                _reseed_fresh()
                try:
                    reply = _output_reply(_call(fn, args), limit)
                except MemoryError:
                    reply = {"status": "memory", "error": "MemoryError (address-space limit)"}
                except BaseException as exc:  # noqa: BLE001 - user code may raise anything
                    reply = {"status": "exception", "error": _format_exc(exc)}
                if os.getpid() == call_pid:
                    result.write(reply)
            finally:
                os._exit(0)
        timeout = float(req["call_timeout_s"])
        ready = _wait_exit(pid, timeout)
        try:
            _, wait_status = os.waitpid(pid, 0)
        except ChildProcessError:
            wait_status = None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        # A fresh process would find an empty /tmp: so does the next call.
        _wipe(os.getcwd())
        if not ready:
            return {"status": "timeout", "error": f"wall-clock limit of {timeout} s"}
        reply = result.read() or _status_from_wait(wait_status, {"cpu_s": req["call_cpu_s"]})
        return {k: reply.get(k) for k in ("status", "output", "error", "conversions")}
    finally:
        result.close()


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


def _size_error(text, value, lim):
    items, longest, _ = json_stats(value)
    return (
        f"output over the pair limits: {len(text.encode('utf-8'))} bytes (max_bytes "
        f"{lim['max_bytes']}), {items} items (max_items {lim['max_items']}), a string of "
        f"{longest} (max_str_len {lim['max_str_len']})"
    )


def _run_iopairs(req, checkpoint):
    lim = req["limits"]
    counts = {
        "generator_calls": 0,
        "generator_errors": 0,
        "main_solution_calls": 0,
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
        "stopped_at_budget": 0,
        "stopped_all_failing": 0,
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
    # After this many draws, a generator (or main_solution) that failed every time is broken.
    give_up = int(lim.get("stop_after_failures") or 0)
    pairs = []
    seen = set()
    conversions = set()
    errors = {"generator": None, "call": None, "output": None}

    def reply():
        return {
            "status": "ok",
            "pairs": pairs,
            "counts": counts,
            "error": errors["call"] or errors["generator"],
            "call_error": errors["call"],
            "generator_error": errors["generator"],
            "output_error": errors["output"],
            "conversions": sorted(conversions),
        }

    for draw in range(int(lim["max_generator_calls"])):
        if len(pairs) >= lim["max_pairs"]:
            break
        if give_up and (
            counts["generator_errors"] == counts["generator_calls"] >= give_up
            or counts["dropped_exception"] == counts["main_solution_calls"] >= give_up
        ):
            counts["stopped_all_failing"] = 1
            break
        left = deadline - time.monotonic()
        if left <= 0:
            counts["stopped_at_budget"] = 1
            break
        # No call may run past the budget: the draw it interrupts is abandoned, not counted.
        budget_bound = left < call_timeout
        counts["generator_calls"] += 1
        _reseed_draw(req["seed_key"], draw)
        try:
            raw = _timed(min(call_timeout, left), gen)
            text, conv = canonical_json(raw)
        except _CallTimeout as exc:
            if budget_bound:
                counts["generator_calls"] -= 1
                counts["stopped_at_budget"] = 1
                break
            counts["generator_errors"] += 1
            errors["generator"] = errors["generator"] or _format_exc(exc)
            continue
        except Exception as exc:  # noqa: BLE001 - generator bugs are data
            counts["generator_errors"] += 1
            errors["generator"] = errors["generator"] or _format_exc(exc)
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
        left = deadline - time.monotonic()
        if left <= 0:
            counts["stopped_at_budget"] = 1
            break
        budget_bound = left < call_timeout
        seen.add(text)
        _reseed_fresh()
        counts["main_solution_calls"] += 1
        try:
            out = _timed(min(call_timeout, left), fn, **value)
        except _CallTimeout:
            if budget_bound:
                counts["main_solution_calls"] -= 1
                counts["stopped_at_budget"] = 1
                break
            counts["dropped_timeout"] += 1
            continue
        except MemoryError:
            counts["dropped_memory"] += 1
            continue
        except Exception as exc:  # noqa: BLE001
            counts["dropped_exception"] += 1
            errors["call"] = errors["call"] or _format_exc(exc)
            continue
        if out is None:
            counts["dropped_none_output"] += 1
            continue
        try:
            out_text, out_conv = canonical_json(out)
        except (ValueError, RecursionError, MemoryError) as exc:
            counts["dropped_invalid_output"] += 1
            errors["output"] = errors["output"] or f"output has no JSON form: {str(exc)[:300]}"
            continue
        out_value = json.loads(out_text)
        if _too_large(out_text, out_value, lim):
            counts["dropped_too_large_output"] += 1
            errors["output"] = errors["output"] or _size_error(out_text, out_value, lim)
            continue
        if json_stats(out_value)[2]:
            counts["dropped_nonfinite"] += 1
            continue
        conversions.update(conv)
        conversions.update(out_conv)
        pairs.append([text, out_text])
        # Kept if the job is killed later (a call stuck where the alarm cannot reach it).
        checkpoint(reply())
    return reply()


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

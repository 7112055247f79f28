"""The attack suite behind `codeio sandbox selftest` and the sandbox tests.

Each attack runs as a job in a single-worker executor; it is contained when its own result and
the host-side check show no effect, and a follow-up job in the same (unreplaced) worker succeeds.
"""

from __future__ import annotations

import os
import secrets
import socket
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from codeio_dagster.sandbox.executor import Executor
from codeio_dagster.sandbox.jobs import Job, JobResult

SECRET_ENV = "CODEIO_SELFTEST_SECRET"
PROJECT_ROOT = Path(__file__).resolve().parents[1]

_OK_PROBE = "def probe():\n    return 'alive'\n"


@dataclass
class Attack:
    """One hostile job, what its result may be, and the follow-up that must still work."""

    name: str
    code: str
    input: dict[str, Any] = field(default_factory=dict)
    allowed: tuple[str, ...] = ("exception",)
    result_check: Callable[[JobResult, dict[str, Any]], str | None] | None = None
    probe: str = _OK_PROBE
    probe_input: Callable[[JobResult], dict[str, Any]] | None = None
    probe_expect: str = '"alive"'
    timeout_s: float | None = None


@dataclass
class AttackReport:
    """The verdict on one attack."""

    name: str
    status: str
    contained: bool
    detail: str


def _no_secret(result: JobResult, ctx: dict[str, Any]) -> str | None:
    blob = f"{result.output} {result.error} {result.stdout}"
    return "the host secret reached the job" if ctx["secret"] in blob else None


def attacks(ctx: dict[str, Any]) -> list[Attack]:
    """The attack list; ctx holds the listener ports, canary path and project path."""
    connect = (
        "import socket\n"
        "def attack(host, port):\n"
        "    fam = socket.AF_INET6 if ':' in host else socket.AF_INET\n"
        "    s = socket.socket(fam, socket.SOCK_STREAM)\n"
        "    s.settimeout(2)\n"
        "    s.connect((host, port))\n"
        "    s.sendall(b'PWNED')\n"
        "    return 'connected'\n"
    )
    write = "def attack(path):\n    with open(path, 'a') as f:\n        f.write('PWNED')\n    return 'written'\n"
    read = "def attack(path):\n    with open(path, 'rb') as f:\n        return f.read(200).decode('latin-1')\n"
    return [
        Attack("connect 127.0.0.1", connect, {"host": "127.0.0.1", "port": ctx["port4"]}),
        Attack("connect ::1", connect, {"host": "::1", "port": ctx["port6"]}),
        Attack("connect to the internet", connect, {"host": "1.1.1.1", "port": 53}),
        Attack(
            "DNS lookup",
            "import socket\ndef attack():\n    return socket.getaddrinfo('pypi.org', 443)[0][4][0]\n",
        ),
        Attack("write /etc", write, {"path": "/etc/codeio-pwned"}),
        Attack("write the project folder", write, {"path": str(ctx["project"] / "PWNED")}),
        Attack(
            "write a host canary file", write, {"path": str(ctx["canary"])}, ("exception", "ok")
        ),
        Attack("write the runtime", write, {"path": "/runtime/PWNED"}),
        Attack("read /etc/shadow", read, {"path": "/etc/shadow"}),
        Attack("read /proc/1/environ", read, {"path": "/proc/1/environ"}),
        Attack(
            "list home folders",
            "import os\ndef attack():\n    return [os.listdir(p) for p in ('/root', '/home')]\n",
        ),
        Attack(
            "read an environment secret",
            "import os\ndef attack():\n    return dict(os.environ)\n",
            allowed=("ok",),
            result_check=_no_secret,
        ),
        Attack(
            "fork bomb",
            "import os\ndef attack():\n    while True:\n        os.fork()\n",
            allowed=("exception", "timeout", "memory"),
            timeout_s=5,
        ),
        Attack(
            "8 GB at once",
            "def attack():\n    return len(bytearray(8 * 1024 ** 3))\n",
            allowed=("memory",),
        ),
        Attack(
            "8 GB in steps",
            "def attack():\n    hog = []\n    for _ in range(80):\n"
            "        hog.append(bytearray(100 * 1024 ** 2))\n    return len(hog)\n",
            allowed=("memory",),
            # Zero-filling each step costs page faults that are slow on VMs; the limit on memory,
            # not the clock, must be what stops it, even on a loaded machine.
            timeout_s=30,
        ),
        Attack(
            "infinite loop",
            "def attack():\n    while True:\n        pass\n",
            allowed=("timeout",),
            timeout_s=1,
        ),
        Attack(
            "sleep",
            "import time\ndef attack():\n    time.sleep(3600)\n",
            allowed=("timeout",),
            timeout_s=1,
        ),
        Attack(
            "100 MB to stdout",
            "import os, sys\ndef attack():\n    chunk = 'x' * (1 << 20)\n    for _ in range(100):\n"
            "        sys.stdout.write(chunk)\n        os.write(1, chunk.encode())\n    return 1\n",
            allowed=("ok",),
            result_check=lambda r, c: None if len(r.stdout) <= 8192 else "stdout not capped",
        ),
        Attack(
            "100 MB return value",
            "def attack():\n    return 'x' * (100 << 20)\n",
            allowed=("output_limit",),
        ),
        Attack(
            "200 MB file",
            "def attack():\n    with open('/tmp/big', 'wb') as f:\n        for _ in range(200):\n"
            "            f.write(b'x' * (1 << 20))\n    return 'written'\n",
        ),
        Attack(
            "kill pid 1",
            "import os, signal\ndef attack():\n    os.kill(1, signal.SIGKILL)\n"
            "    os.kill(1, signal.SIGTERM)\n    return 'sent'\n",
            allowed=("ok", "exception"),
        ),
        Attack(
            "kill(-1)",
            "import os, signal\ndef attack():\n    os.kill(-1, signal.SIGKILL)\n    return 'sent'\n",
            allowed=("ok", "exception"),
        ),
        Attack(
            "daemon left behind",
            "import os, time\ndef attack():\n    pid = os.fork()\n    if pid == 0:\n"
            "        os.setsid()\n        if os.fork():\n            os._exit(0)\n"
            "        while True:\n            time.sleep(0.05)\n"
            "    os.waitpid(pid, 0)\n    return os.getpid()\n",
            allowed=("ok",),
            probe="import os\ndef probe(pid):\n    alive = []\n"
            "    for p in range(2, pid + 50):\n        try:\n            os.kill(p, 0)\n"
            "            alive.append(p)\n        except OSError:\n            pass\n"
            "    return [p for p in alive if p != os.getpid()]\n",
            probe_input=lambda r: {"pid": int(r.output or 0)},
            probe_expect="[]",
        ),
        Attack(
            "files left in /tmp",
            "import os\ndef attack():\n    os.makedirs('/tmp/d/e', exist_ok=True)\n"
            "    open('/tmp/d/e/leak', 'w').write('x')\n    os.chmod('/tmp/d', 0)\n"
            "    open('/tmp/leak', 'w').write('x')\n    return sorted(os.listdir('/tmp'))\n",
            allowed=("ok",),
            probe="import os\ndef probe():\n    return os.listdir('/tmp')\n",
            probe_expect="[]",
        ),
        Attack(
            "import the project",
            "def attack():\n    import codeio_dagster\n    return codeio_dagster.__file__\n",
        ),
        Attack(
            "import the project's dependencies",
            "def attack():\n    import dagster\n    return dagster.__file__\n",
        ),
        Attack(
            "become root",
            "import os\ndef attack():\n    os.setuid(0)\n    return os.getuid()\n",
        ),
    ]


class _Listeners:
    """TCP listeners on 127.0.0.1 and ::1 that must never see a connection."""

    def __init__(self) -> None:
        self.socks: list[socket.socket] = []
        self.ports: dict[str, int] = {}
        for name, fam, host in (
            ("port4", socket.AF_INET, "127.0.0.1"),
            ("port6", socket.AF_INET6, "::1"),
        ):
            s = socket.socket(fam, socket.SOCK_STREAM)
            try:
                s.bind((host, 0))
            except OSError:
                s.close()
                self.ports[name] = 9
                continue
            s.listen(8)
            s.setblocking(False)
            self.socks.append(s)
            self.ports[name] = s.getsockname()[1]

    def received(self) -> bool:
        for s in self.socks:
            try:
                conn, _ = s.accept()
            except BlockingIOError:
                continue
            conn.close()
            return True
        return False

    def close(self) -> None:
        for s in self.socks:
            s.close()


def run_attacks(executor: Executor) -> list[AttackReport]:
    """Run every attack plus its follow-up job; the executor should have one worker."""
    listeners = _Listeners()
    secret = secrets.token_hex(16)
    old_secret = os.environ.get(SECRET_ENV)
    os.environ[SECRET_ENV] = secret
    canary_dir = tempfile.mkdtemp(prefix="codeio-canary-")
    canary = Path(canary_dir) / "canary.txt"
    canary.write_text("canary")
    ctx = {**listeners.ports, "canary": canary, "project": PROJECT_ROOT, "secret": secret}
    reports = []
    try:
        # Start the worker first so that "the worker had to be replaced" means what it says.
        executor.run([Job(id="warm-up", code=_OK_PROBE, call="probe")])
        for attack in attacks(ctx):
            reports.append(_run_one(executor, attack, ctx, listeners))
    finally:
        listeners.close()
        if old_secret is None:
            os.environ.pop(SECRET_ENV, None)
        else:
            os.environ[SECRET_ENV] = old_secret
        canary.unlink(missing_ok=True)
        os.rmdir(canary_dir)
    return reports


def _worker_starts(executor: Executor) -> int:
    return sum(w.starts for pool in executor._pools.values() for w in pool)


def _run_one(
    executor: Executor, attack: Attack, ctx: dict[str, Any], listeners: _Listeners
) -> AttackReport:
    starts = _worker_starts(executor)
    job = Job(id=attack.name, code=attack.code, call="attack", input=attack.input)
    if attack.timeout_s:
        job.timeout_s = attack.timeout_s
    (result,) = executor.run([job])
    problems = []
    if result.status not in attack.allowed:
        problems.append(f"status {result.status}, expected {'/'.join(attack.allowed)}")
    if attack.result_check is not None:
        problem = attack.result_check(result, ctx)
        if problem:
            problems.append(problem)
    if listeners.received():
        problems.append("a host listener received a connection")
    if ctx["canary"].read_text() != "canary":
        problems.append("the host canary file changed")
    for path in (Path("/etc/codeio-pwned"), ctx["project"] / "PWNED"):
        if path.exists():
            problems.append(f"{path} was created on the host")
    probe_input = attack.probe_input(result) if attack.probe_input else {}
    (probe,) = executor.run(
        [Job(id=f"{attack.name} (next)", code=attack.probe, call="probe", input=probe_input)]
    )
    if probe.status != "ok" or probe.output != attack.probe_expect:
        problems.append(f"next job gave {probe.status} {probe.output or probe.error}")
    if _worker_starts(executor) != starts:
        problems.append("the worker had to be replaced")
    detail = "; ".join(problems) or (result.error or result.output or "").splitlines()[0][:80]
    return AttackReport(attack.name, result.status, not problems, detail)


def format_table(reports: list[AttackReport]) -> str:
    """A plain-text table of attack verdicts."""
    width = max(len(r.name) for r in reports)
    lines = [f"{'attack':<{width}}  {'status':<13} {'verdict':<9} detail"]
    for r in reports:
        verdict = "contained" if r.contained else "BREACH"
        lines.append(f"{r.name:<{width}}  {r.status:<13} {verdict:<9} {r.detail}")
    return "\n".join(lines)

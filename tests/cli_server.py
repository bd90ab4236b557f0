"""A process that has imported what `python -m src.main` imports, and forks one child per CLI run of the tests.

Almost all of a tiny CLI run's CPU time is the interpreter importing torch, Lightning, scikit-learn and Hydra; the
suite runs the CLI about a hundred times. `conftest.run_cli` hands each run to this server (one per pytest
process): it forks, and the child runs `src.main` as `python -m src.main` does (`runpy`, as `__main__`, with the
run's argv, environment and working directory, stdout and stderr to files), then exits through the interpreter's
normal exit (atexit handlers, `sys.exit` messages and codes as usual). The parent imports and never runs a job, so
every child starts from the same state and no thread pool has run before the fork.

What a fork cannot carry over is an environment variable a library reads when it is imported (thread counts,
torch's and Hugging Face's switches): `run_cli` runs a real subprocess when the run's environment differs from the
server's in any of those (`IMPORT_TIME_ENV`), and when `TRANSFER_TEST_FORK=0`. Some libraries set such variables
themselves when imported (Lightning sets `PYTORCH_NVML_BASED_CUDA_CHECK`, for one), so a test process that has
imported them has them too: a variable the server's imports set may hold either its value before or after them.

`Client` is the other end (the conftest's, and the benchmarks' smoke mode: benchmarks/common.py).

Protocol: once its imports are done the server says hello ({"import_env": its import-time variables now}); then one
JSON line per request on stdin ({"op", "module", "args", "cwd", "env", "stdout", "stderr", "timeout"} or {"op":
"wait", "pid", "timeout"}), one JSON line per reply on stdout; EOF on stdin ends the server.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys

# Prefixes of the variables that libraries read at import (or first use, which the server's imports trigger).
IMPORT_TIME_ENV = ("OMP_", "MKL_", "OPENBLAS_", "GOTO", "BLIS_", "VECLIB_", "NUMEXPR_", "NUMBA_", "KMP_", "TORCH",
                   "PYTORCH", "CUDA", "HF_", "HUGGINGFACE", "TIMM", "PYTHON", "LD_", "MALLOC", "JEMALLOC", "TOKENIZERS")


def import_time_env(env: dict) -> dict:
    return {k: v for k, v in env.items() if k.startswith(IMPORT_TIME_ENV)}


class Client:
    """A running server (`python -m tests.cli_server` in `cwd`, with `env`), one request at a time. `cpu`: CPU
    seconds of the runs it forked so far."""

    def __init__(self, env: dict, cwd) -> None:
        self.started_env = import_time_env(env)
        self.imported_env: dict | None = None  # the server's, after its imports (its hello)
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.cli_server"], cwd=cwd, env=env, text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.cpu = 0.0

    def forks(self, env: dict) -> bool:
        """Whether a run with `env` may be forked from this server: each import-time variable as the server had it
        when started or as its imports left it (a fresh interpreter's imports would set it to the same)."""
        run, imported = import_time_env(env), self._imports_done()
        return all(run.get(k) in (self.started_env.get(k), imported.get(k))
                   for k in {*run, *self.started_env, *imported})

    def _imports_done(self) -> dict:
        """The server's import-time variables after its imports (its hello, read once: it waits for the imports)."""
        if self.imported_env is None:
            self.imported_env = self._reply()["import_env"]
        return self.imported_env

    def _reply(self) -> dict:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"tests/cli_server.py ended (exit {self.proc.wait()}); its errors are above")
        return json.loads(line)

    def request(self, **request) -> dict:
        assert self.proc.stdin is not None
        self._imports_done()  # the hello comes first on the reply stream
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        reply = self._reply()
        self.cpu += reply.get("cpu") or 0.0
        return reply

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()  # EOF: the server exits
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _reply(fd: int, reply: dict) -> None:
    os.write(fd, (json.dumps(reply) + "\n").encode())


def _wait(pid: int, timeout: float | None, kill: bool) -> dict:
    """Wait up to `timeout` seconds (None: no limit) for a child. On time: its returncode (as subprocess gives it)
    and the CPU seconds of it and the children it waited for. Past the limit: with `kill`, its process group is
    killed first (subprocess.run's timeout); without, it goes on and the reply says it is running."""
    pidfd = os.pidfd_open(pid)
    try:
        timed_out = not select.select([pidfd], [], [], timeout)[0]
        if timed_out and not kill:
            return {"returncode": None, "timed_out": True}
        if timed_out:
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        _, status, usage = os.wait4(pid, 0)
    finally:
        os.close(pidfd)
    return {"returncode": os.waitstatus_to_exitcode(status), "timed_out": timed_out,
            "cpu": usage.ru_utime + usage.ru_stime}


def protocol() -> tuple:
    """The request and reply streams, moved off stdin and stdout: nothing the server's libraries print reaches the
    protocol (their output goes to stderr)."""
    requests = os.fdopen(os.dup(0), "r")
    replies = os.dup(1)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(2, 1)
    os.close(devnull)
    return requests, replies


def _redirect(request: dict) -> None:
    """The child's stdout and stderr to the request's files ("stdout" for stderr: the same file)."""
    out = os.open(request["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(out, 1)
    if request["stderr"] == "stdout":
        os.dup2(out, 2)
    else:
        err = os.open(request["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(err, 2)
        os.close(err)
    os.close(out)


def serve(requests, replies: int) -> dict:
    """Answer requests until EOF; returns (in a forked child only) the request that child is to run.

    ops: "run" (fork, wait up to "timeout", killing the run past it), "spawn" (fork, reply with the pid), "wait"
    (a spawned pid, up to "timeout")."""
    for line in requests:
        request = json.loads(line)
        if request["op"] == "wait":
            _reply(replies, _wait(request["pid"], request["timeout"], kill=False))
            continue
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            requests.close()
            os.close(replies)
            os.setpgid(0, 0)  # a timeout kills the run and whatever it started; a test may kill its group
            _redirect(request)
            return request
        if request["op"] == "spawn":
            _reply(replies, {"pid": pid})
        else:
            _reply(replies, _wait(pid, request["timeout"], kill=True))
    sys.exit(0)


def _run(request: dict) -> None:
    """In the forked child: become `python -m MODULE ARGS` in `cwd` with exactly `env`."""
    import runpy

    os.environ.clear()
    os.environ.update(request["env"])
    os.chdir(request["cwd"])
    sys.path[0] = request["cwd"]  # what `python -m` puts first
    sys.argv = ["-m", *request["args"]]  # runpy puts the module's file in argv[0], as `python -m` does
    runpy.run_module(request["module"], run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    streams = protocol()
    import gc
    import importlib
    import pkgutil

    # What a CLI run imports before its first stage (src.experiment imports the stages' libraries; the probe's,
    # scikit-learn, when a job first scores one), and the Hydra plugins Hydra's start-up imports to find them.
    import hydra_plugins
    import src
    import src.experiment  # noqa: F401
    import src.main  # noqa: F401
    import src.probe.linear  # noqa: F401
    import src.probe.retrieval  # noqa: F401
    import pytorch_lightning  # noqa: F401
    import sklearn.linear_model  # noqa: F401

    for plugin in pkgutil.walk_packages(hydra_plugins.__path__, "hydra_plugins."):
        importlib.import_module(plugin.name)
    # `python -m src.main` runs the module as __main__ and has no `src.main` until something imports it.
    del sys.modules["src.main"], src.main
    # Out of the collector's sight: a child's collections would otherwise walk (and so copy, page by page) every
    # object the imports made.
    gc.freeze()

    _reply(streams[1], {"import_env": import_time_env(dict(os.environ))})
    _run(serve(*streams))

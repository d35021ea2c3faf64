"""Warm starts for the suite's runs of the entry points (`run_script` in conftest.py).

Every `python train.py ...` a test runs spends seconds importing torch, Lightning,
transformers and datasets before it reads its first argument; the suite starts dozens. This
process imports them once, then forks one child per run: the child sets the run's
environment, working folder, arguments and output files and executes the script or module
as `python <script>` would (`runpy`, as `__main__`), in a process of its own. What runs is the
real entry point; only the imports were done before the fork.

A fork is safe here only while this process has a single thread and has run no math (an
OpenMP or BLAS pool would be copied without its threads): it checks that before it serves
and says so on its first line, and conftest.py falls back to plain subprocesses otherwise.

Protocol (JSON lines): it prints {"ready": bool, "why": str}; then answers each request:
- {"op": "run", "argv", "env", "cwd", "stdout", "stderr", "timeout"}: runs it to its end,
  {"returncode": int, "timed_out": bool};
- {"op": "start", ... the same but "timeout"}: forks it and answers at once, {"pid": int}
  (a run a test signals or runs beside others; the test signals the pid itself);
- {"op": "poll", "pid"}: {"returncode": int or null (still running)}.
"""

import json
import os
import signal
import sys
import time
import traceback


def _preload() -> None:
    """The imports every training run needs. Not `datasets` (nor xitt's modules, which import
    it): pyarrow starts an allocator thread as it loads, and a process with threads must not
    fork."""
    import importlib

    for name in ("hydra", "omegaconf", "torch", "transformers", "pytorch_lightning"):
        importlib.import_module(name)


def _threads() -> int:
    return len(os.listdir("/proc/self/task")) if os.path.isdir("/proc/self/task") else -1


def _child(request: dict) -> None:
    """In the forked child: become the run, then exit with its code."""
    os.setpgrp()  # its own process group: a timeout kills it with everything it started
    code = 1
    try:
        for fd, path in ((0, os.devnull), (1, request["stdout"]), (2, request["stderr"])):
            target = os.open(path, os.O_RDONLY) if fd == 0 else os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(target, fd)
            os.close(target)
        os.environ.clear()
        os.environ.update(request["env"])
        os.chdir(request["cwd"])
        signal.signal(signal.SIGINT, signal.default_int_handler)
        import runpy

        argv = request["argv"]
        try:
            if argv[0] == "-m":
                sys.argv = [argv[1], *argv[2:]]
                sys.path[0] = request["cwd"]
                runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
            else:
                sys.argv = list(argv)
                sys.path[0] = os.path.dirname(os.path.abspath(argv[0]))
                runpy.run_path(argv[0], run_name="__main__")
            code = 0
        except SystemExit as stop:
            if stop.code is None:
                code = 0
            elif isinstance(stop.code, int):
                code = stop.code
            else:
                print(stop.code, file=sys.stderr)
                code = 1
        except BaseException:  # as the interpreter would: the traceback on stderr, exit status 1
            traceback.print_exc()
            code = 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        os._exit(code)


def _wait(pid: int, timeout: float) -> tuple[int, bool]:
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status), False
        if time.monotonic() > deadline:
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            os.waitpid(pid, 0)
            return -signal.SIGKILL, True
        time.sleep(0.02)


def main() -> None:
    try:
        _preload()
        threads = _threads()
        ready, why = threads == 1, f"{threads} threads after the imports"
    except Exception as error:  # no warm starts: the suite runs plain subprocesses
        ready, why = False, f"preloading failed: {error!r}"
    print(json.dumps({"ready": ready, "why": why}), flush=True)
    if not ready:
        return
    for line in sys.stdin:
        request = json.loads(line)
        if request["op"] == "poll":
            done, status = os.waitpid(request["pid"], os.WNOHANG)
            print(json.dumps({"returncode": os.waitstatus_to_exitcode(status) if done else None}), flush=True)
            continue
        pid = os.fork()
        if pid == 0:
            _child(request)
        if request["op"] == "start":
            print(json.dumps({"pid": pid}), flush=True)
            continue
        code, timed_out = _wait(pid, float(request["timeout"]))
        print(json.dumps({"returncode": code, "timed_out": timed_out}), flush=True)


if __name__ == "__main__":
    main()

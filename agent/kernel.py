# The Python session kernel: one interpreter whose globals live across cells, like
# a notebook kernel. The agent starts it with fd 3 carrying cells (one JSON object
# per line) and fd 4 taking replies; each cell names two FIFOs that become the
# cell's stdout and stderr for as long as it runs.
import json
import os
import resource
import sys
import traceback

ctl_in = os.fdopen(os.dup(3), "r", encoding="utf-8")
ctl_out = os.fdopen(os.dup(4), "w", encoding="utf-8", buffering=1)
os.close(3)
os.close(4)
null = os.open(os.devnull, os.O_RDWR)
namespace = {"__name__": "__main__", "__builtins__": __builtins__}


def exit_code(exc):
    code = exc.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def run(cell):
    out = os.open(cell["stdout"], os.O_WRONLY)
    err = os.open(cell["stderr"], os.O_WRONLY)
    os.dup2(out, 1)
    os.dup2(err, 2)
    os.close(out)
    os.close(err)
    rc = 0
    try:
        if cell.get("dir"):
            os.chdir(cell["dir"])
        os.environ.update(cell.get("env") or {})
        exec(compile(cell["code"], "<cell>", "exec"), namespace)
    except SystemExit as e:
        rc = exit_code(e)
    except BaseException as e:
        # The kernel's own frame is not the user's business.
        traceback.print_exception(type(e), e, e.__traceback__.tb_next)
        rc = 130 if isinstance(e, KeyboardInterrupt) else 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except BaseException:
            pass
        os.dup2(null, 1)
        os.dup2(null, 2)
    return rc


while True:
    try:
        line = ctl_in.readline()
        if not line:
            break
        cell = json.loads(line)
        try:
            rc = run(cell)
        except Exception:
            traceback.print_exc()  # the kernel's own failure, to the agent's log
            rc = 127
        # The peak resident memory of this process and its reaped children so
        # far (gVisor's /proc keeps no peak): when a cell raised it, it is the
        # cell's peak.
        peak = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                   resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
        ctl_out.write(json.dumps({"token": cell["token"], "exit_code": rc, "maxrss_kb": peak}) + "\n")
    except KeyboardInterrupt:
        continue

# The Python zygote: an interpreter started once per sandbox (as root, by the agent)
# that runs each execution in a fresh process forked from it, so cached executions
# skip the interpreter's start-up.
#
# Forking is slow under gVisor (10-30 ms of CPU: every page written after the fork
# is copied), so it happens off the hot path: the zygote keeps a few children
# (config "standby") forked and prepared ahead of time and hands each one's control
# socket to the agent (on fd 3, a unix SOCK_SEQPACKET socket). The agent first
# sends the standby the pipes that will be its stdin, stdout and stderr; the
# standby says "ready" once prepared. The agent sends a request straight to a
# ready standby, and asks the zygote for replacements when the sandbox is reset
# between executions. Each standby has done all it can before a request exists:
# taken its stdio, joined a cgroup of its own, taken its own process group, set its
# limits, taken the user's groups and the expected environment, and gone once
# through the request's path to take its copy-on-write faults; its uid stays root
# (out of reach of the user's processes, which the agent kills between executions)
# until a request comes, then it becomes the unprivileged user for good, takes the
# working directory (and the request's environment if it differs), and runs the
# code. When the code is done it closes its output and reports its status, then
# exits once the agent has told the host (so gVisor's teardown of the process is
# not on the answer's path). Standbys are the agent's children, not the zygote's
# (clone with CLONE_PARENT; where that is refused, a double fork whose middle
# process exits at once): the agent reaps each as any process it started. The
# zygote is on neither the request's nor the exit's path. Its one argument is
# JSON: uid, gid, rlimits, cgroup_root, max_procs (of each standby's cgroup),
# standby, and env (the environment most executions get, which standbys take
# ahead).
import array, atexit, gc, io, json, os, resource, signal, socket, sys, traceback

# Modules most programs import, loaded once here so executions find them ready.
import collections, functools, itertools, math, re, string, time, datetime, random  # noqa: F401
import ctypes

_libc = ctypes.CDLL(None, use_errno=True)
_SYS_CLONE, _CLONE_PARENT, _SIGCHLD = 56, 0x00008000, 17  # x86_64
_CLONE_NEWIPC = 0x08000000


def fork_sibling():
    """Forks a child whose parent is this process's parent (the agent), as os.fork
    does (same before/after-fork handling), with one copy of the address space
    instead of a double fork's two. Returns the pid (0 in the child), or -1 where
    the kernel refuses CLONE_PARENT."""
    ctypes.pythonapi.PyOS_BeforeFork()
    pid = _libc.syscall(_SYS_CLONE, _CLONE_PARENT | _SIGCHLD, 0, 0, 0, 0)
    if pid == 0:
        ctypes.pythonapi.PyOS_AfterFork_Child()
    else:
        ctypes.pythonapi.PyOS_AfterFork_Parent()
    return pid

FDSIZE = array.array("i").itemsize
RLIMITS = {"nproc": resource.RLIMIT_NPROC, "nofile": resource.RLIMIT_NOFILE,
           "fsize": resource.RLIMIT_FSIZE, "core": resource.RLIMIT_CORE}


def recv_with_fds(sock):
    msg, anc, _, _ = sock.recvmsg(64, socket.CMSG_SPACE(3 * FDSIZE))
    fds = array.array("i")
    for level, kind, data in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[: len(data) - len(data) % FDSIZE])
    return msg, list(fds)


CONFIG = json.loads(sys.argv[1])  # uid, gid, rlimits, cgroup_root, cpuacct_root, max_procs, standby, env: the same for every execution


# The largest request a standby takes (a larger one goes to a new interpreter:
# the agent's send fails).
MAX_REQUEST = 1 << 22

# Taken now: the code may replace os.fstat (mocking libraries do).
_fstat = os.fstat

# What a standby's control socket is open on (file_id), noted as it is prepared:
# at the end, the report goes only to the same.
CONTROL_ID = None


def file_id(fd):
    """What fd is open on (device and inode), or None if it is not open."""
    try:
        st = _fstat(fd)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def take_stdio(control):
    """Makes the pipes the agent sends (its first message) this process's stdin,
    stdout and stderr."""
    msg, fds = recv_with_fds(control)
    if msg != b"stdio" or len(fds) != 3:
        raise RuntimeError("no stdio from the agent")
    for i, fd in enumerate(fds):
        os.dup2(fd, i)
        os.close(fd)


def write_file(path, text):
    """Writes text to a kernel file in three system calls (open() would make
    six: it checks for a terminal and seeks), each slow under gVisor."""
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def prepare(control):
    """Readies a fresh standby for any execution. It stays root (out of reach of
    the user's processes, which the agent kills between executions) until it takes
    a request. Returns its cgroup path ("" if none)."""
    cgroup = ""
    root = CONFIG.get("cgroup_root")
    if root:
        cgroup = "%s/standby-%d" % (root, os.getpid())
        os.mkdir(cgroup, 0o700)
        if CONFIG.get("max_procs"):
            write_file(cgroup + "/pids.max", str(CONFIG["max_procs"]))
        write_file(cgroup + "/cgroup.procs", str(os.getpid()))
        cpu = CONFIG.get("cpuacct_root")
        if cpu:  # the same group in the cpuacct hierarchy: the CPU time the agent bills
            cpu = "%s/standby-%d" % (cpu, os.getpid())
            os.mkdir(cpu, 0o700)
            write_file(cpu + "/cgroup.procs", str(os.getpid()))
    os.setpgid(0, 0)
    # An IPC namespace of its own (as the agent gives every execution's process):
    # System V objects the code makes go with it, never reaching the next one.
    if _libc.unshare(_CLONE_NEWIPC) != 0:
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWIPC)")
    keep = control.fileno()  # every other descriptor but stdio goes (close_range)
    os.closerange(3, keep)
    os.closerange(keep + 1, 1 << 30)
    for name, value in CONFIG.get("rlimits", {}).items():
        resource.setrlimit(RLIMITS[name], (value, value))
    for sig in (signal.SIGPIPE, signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.stdin = io.TextIOWrapper(io.FileIO(0, "r", closefd=False), encoding="utf-8")
    sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), encoding="utf-8", write_through=True)
    sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), encoding="utf-8",
                                  errors="backslashreplace", write_through=True)
    sys.argv = ["-c"]
    sys.path[0] = ""
    random.seed()  # never share the zygote's random state between executions
    prefault()
    # The groups of the user now: a process of the user's can neither signal nor
    # trace a standby while its uid is root.
    os.setgroups([])
    os.setgid(CONFIG["gid"])
    rehearse()
    global CONTROL_ID
    CONTROL_ID = file_id(keep)
    return cgroup


def become(control, req):
    """Turns this standby into the execution's process; never returns. When the code
    is done it reports its exit status and resource usage on the control socket (not
    inherited by programs it runs) before exiting, so the agent need not wait for the
    process's teardown."""
    try:
        os.setuid(CONFIG["uid"])
        os.chdir(req["dir"])
        set_environ(req["env"])
    except BaseException as e:
        try:
            os.write(2, ("faas: setting up the process failed: %r\n" % (e,)).encode())
        finally:
            os._exit(127)
    status = run_main(req["code"])
    # As the interpreter does at exit: wait for the threads that are not daemons,
    # then run the atexit functions.
    threading = sys.modules.get("threading")
    if threading is not None:
        try:
            threading._shutdown()
        except BaseException as e:
            status = exit_status(e, status)
    try:
        atexit._run_exitfuncs()  # reports its functions' exceptions itself
    except BaseException:
        pass
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:
        pass
    # Output ends here: the agent reads to the end without waiting for this
    # process to be torn down.
    for fd in (0, 1, 2):
        try:
            os.close(fd)
        except OSError:
            pass
    # The report goes on the control socket only if it is still there: code
    # that closed it may have opened a file or socket of its own on its number,
    # which must not get the report, nor keep this process waiting (the agent
    # then has the exit from the process's end).
    if file_id(control.fileno()) == CONTROL_ID:
        try:
            control.send(report(status))
            # Exit once the agent has told the host (it closes its end, or
            # kills this process): the teardown is then off the answer's path.
            control.recv(1)
        except BaseException:
            pass
    os._exit(status)


def set_environ(env):
    """Makes env the process's environment (os.environ and the C one programs
    it runs inherit); nothing to do when it already is."""
    if os.environ != env:
        os.environ.clear()
        os.environ.update(env)


def report(status):
    """The end report: exit status and resource usage of the process and its
    reaped children."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return json.dumps({"status": status, "utime_us": int((me.ru_utime + kids.ru_utime) * 1e6),
                       "stime_us": int((me.ru_stime + kids.ru_stime) * 1e6),
                       "maxrss_kb": max(me.ru_maxrss, kids.ru_maxrss)}).encode()


def rehearse():
    """Goes once through what a standby does with a request, to no effect, before
    one exists. The first run of each step in a fresh fork takes copy-on-write
    faults (and, for getrusage, a first call) that cost ~1.4 ms together under
    gVisor: decoding the request, replacing the environment, compiling, the end
    report. The environment is left as the one executions here get unless their
    request sets other variables (config "env"), so most need not change it."""
    req = json.loads(bytearray(json.dumps({"code": "pass", "env": CONFIG.get("env") or {}, "dir": "/"}).encode()))
    set_environ(req["env"])
    compile(req["code"], "<string>", "exec")
    report(0)


def run_main(code):
    """Runs the execution's code as `python3 -c` runs its argument, and returns
    its exit status."""
    try:
        exec(compile(code, "<string>", "exec"), {"__name__": "__main__", "__builtins__": __builtins__})
    except BaseException as e:
        return exit_status(e, 1, skip=1)
    return 0


def exit_status(e, status, skip=0):
    """The exit status an exception ending the program gives (SystemExit's code,
    else 1, printing the traceback without the zygote's own skip frames)."""
    if isinstance(e, SystemExit):
        if e.code is None:
            return 0
        if isinstance(e.code, int):
            return e.code & 0xFF
        print(e.code, file=sys.stderr)
        return 1
    tb = e.__traceback__
    for _ in range(skip):
        tb = tb.tb_next if tb is not None else None
    traceback.print_exception(type(e), e, tb)
    return 1


def prefault():
    """Takes the copy-on-write faults of a fresh fork now, while waiting, instead
    of on the execution's path (under gVisor each costs tens of microseconds, and
    reference counting writes to every object a program touches)."""
    for o in gc.get_objects():
        pass
    for m in list(sys.modules.values()):
        getattr(m, "__dict__", None)
    exec(compile("import sys, os\n_ = [str(i) for i in range(64)]", "<prefault>", "exec"), {})
    io.TextIOWrapper(io.BytesIO(), encoding="utf-8", write_through=True).write("x")


def warm_syscalls():
    """Makes, once and to no effect, the system calls a standby makes only once it
    has a request. Under gVisor (systrap) a call site traps slowly the first time
    it runs in a process and is then patched to a fast path; a standby inherits
    the zygote's patched code."""
    os.setgroups(os.getgroups())
    os.setgid(os.getgid())
    os.setuid(os.getuid())
    os.chdir(os.getcwd())
    os.write(1, b"")  # nothing is written
    resource.getrusage(resource.RUSAGE_SELF)
    resource.getrusage(resource.RUSAGE_CHILDREN)


class Zygote:
    def __init__(self):
        self.agent = socket.socket(fileno=3)
        self.clone_parent = True
        warm_syscalls()
        # Everything loaded so far is permanent: the collector never walks (and so
        # never writes to) it in forked children.
        gc.collect()
        gc.freeze()

    def fork_standby(self):
        """Forks a standby and hands its control socket to the agent."""
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pid = fork_sibling() if self.clone_parent else -1
        if pid == 0:
            self.standby(theirs)
        if pid < 0:
            self.clone_parent = False
            pid = self.double_fork(theirs)
        theirs.close()
        if pid > 0:
            root = CONFIG.get("cgroup_root")
            info = {"pid": pid, "cgroup": "%s/standby-%d" % (root, pid) if root else ""}
            self.agent.sendmsg([json.dumps(info).encode()],
                               [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [mine.fileno()]))])
        mine.close()

    def standby(self, control):
        try:
            take_stdio(control)
            prepare(control)
            control.send(b"ready")
            size = control.recv_into(bytearray(1), 1, socket.MSG_PEEK | socket.MSG_TRUNC)
            if size > MAX_REQUEST:
                raise RuntimeError("the request is larger than %d bytes" % MAX_REQUEST)
            if size:
                request = bytearray(size)
                n = control.recv_into(request)
                become(control, json.loads(request[:n]))
        except BaseException as e:
            os.write(2, ("faas: zygote standby failed: %r\n" % (e,)).encode())
        finally:
            os._exit(127)

    def double_fork(self, control):
        r, w = os.pipe()
        mid = os.fork()
        if mid == 0:
            try:
                os.close(r)
                pid = os.fork()
                if pid == 0:
                    os.close(w)
                    self.standby(control)
                os.write(w, str(pid).encode())
            finally:
                os._exit(0)
        os.close(w)
        data = os.read(r, 32)
        os.close(r)
        os.waitpid(mid, 0)
        return int(data) if data else -1

    def loop(self):
        self.agent.send(b'{"ready": true}')
        for _ in range(CONFIG["standby"]):
            self.fork_standby()
        while True:
            msg = self.agent.recv(64)  # the agent took a standby: fork another
            if not msg:
                os._exit(0)
            self.fork_standby()


Zygote().loop()

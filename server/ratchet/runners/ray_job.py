"""The entrypoint of one Ray job: a small stdlib-only Python wrapper around the command,
run on the cluster's node in the job's working_dir (ray.py ships it as an env var).

It copies the working_dir to a fresh folder, hashes the locked files, runs the command (in
the sandbox, built there from runners/sandbox.py's shipped text) under a timeout of its own,
kills what the command leaves behind, hashes again, and reports on two marker lines whose
marker the command never learns.
"""

# Runs on the cluster's node, in the job's working_dir, with whatever python3 is there.
WRAPPER = r"""
import hashlib, json, os, shutil, signal, socket, subprocess, sys, tempfile, threading, time
import types
run = json.loads(os.environ.pop("RATCHET_RAY_RUN"))
os.environ.pop("RATCHET_RAY_WRAPPER", None)
sandbox_source = os.environ.pop("RATCHET_RAY_SANDBOX", "")
marker, token, command = run["marker"], run["token"], sys.argv[1]
out = sys.stdout.buffer
# Every run in a fresh copy: Ray reuses one unpacked working_dir for jobs of the same content,
# so a run writing there would reach the next (a repeat, or the evaluator).
shipped = os.getcwd()
work = tempfile.mkdtemp(prefix="ratchet-run-")
shutil.copytree(shipped, work, symlinks=True, dirs_exist_ok=True)
for path in run["drop"]:
    target = os.path.join(work, path)
    if os.path.isdir(target) and not os.path.islink(target):
        shutil.rmtree(target)
    elif os.path.lexists(target):
        os.remove(target)
os.chdir(work)

def report(kind, value):
    out.write(("%s %s %s\n" % (marker, kind, json.dumps(value))).encode())
    out.flush()

def digest(path):
    h = hashlib.sha256()
    if os.path.islink(path):
        h.update(b"link:" + os.readlink(path).encode())
    elif os.path.isfile(path):
        with open(path, "rb") as f:
            h.update(f.read())
    elif os.path.isdir(path):
        for top, dirs, files in os.walk(path):
            dirs.sort()
            for name in sorted(files):
                full = os.path.join(top, name)
                h.update(os.path.relpath(full, path).encode() + b"\0")
                if os.path.isfile(full):
                    with open(full, "rb") as f:
                        h.update(f.read())
    else:
        return "missing"
    return h.hexdigest()

def hashes(paths=None):
    return {p: digest(p) for p in (run["locked"] if paths is None else paths)}

def sandboxed(env):
    # argv, env and the cgroup for the command in bubblewrap: the same sandbox as on
    # Ratchet's machine (runners/sandbox.py, shipped as text).
    module = types.ModuleType("ratchet_sandbox")
    sys.modules[module.__name__] = module
    exec(compile(sandbox_source, "ratchet_sandbox", "exec"), module.__dict__)
    bwrap = module.find_bwrap()
    if bwrap is None or module.probe(bwrap):
        raise RuntimeError(module.probe(bwrap) or "no bubblewrap")
    home = os.path.expanduser("~")
    hidden = (shipped, home)
    prefixes = {sys.prefix, sys.base_prefix}
    spec = module.SandboxSpec(
        bwrap=bwrap, run_dir=work, hide=(shipped,), home=home,
        read=tuple(module.toolchain_folders(hidden, env.get("PATH", ""), prefixes, command))
        + tuple(module.expand(run["sandbox"]["read"], home)),
        write=module.expand(run["sandbox"]["write"], home), network=run["sandbox"]["network"],
    )
    init = ["/bin/sh", "-c", run["init"], "ratchet-init", command, "", "", ""]
    argv = module.build_argv(spec, init)
    limit, cgroup = run["sandbox"]["max_processes"], None
    if os.getuid() == 0:
        cgroup = "/sys/fs/cgroup/pids/ratchet-" + token
        try:
            os.mkdir(cgroup)
            with open(cgroup + "/pids.max", "w") as f:
                f.write(str(limit))
            argv = ["/bin/sh", "-c", 'echo $$ > "%s/cgroup.procs" && exec "$@"' % cgroup,
                    "ratchet-limit"] + argv
        except OSError:
            cgroup = None
    elif shutil.which("prlimit"):
        mine = sum(1 for p in os.listdir("/proc") if p.isdigit()
                   and os.stat("/proc/" + p).st_uid == os.getuid())
        argv = ["prlimit", "--nproc=%d:%d" % (mine + limit, mine + limit), "--"] + argv
    clean = module.clean_env(env, run["sandbox"]["env"], {})
    clean["HOME"] = home
    return argv, clean, cgroup

def with_token():
    needle = ("%s=%s" % (run["token_variable"], token)).encode()
    found = []
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                with open("/proc/%s/environ" % entry, "rb") as f:
                    if needle in f.read().split(b"\0"):
                        found.append(int(entry))
            except OSError:
                pass
    return found

def kill_leftovers():
    pids = with_token()
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except OSError:
                pass
        deadline = time.time() + 2
        while sig == signal.SIGTERM and time.time() < deadline and with_token():
            time.sleep(0.05)
        pids = with_token()
    return pids

def hardware():
    info = {"host": socket.gethostname(), "cpus": os.cpu_count() or 1, "cpu": "",
            "gpu": None, "gpu_count": 0, "driver": None}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if run["gpu"]:
        try:
            rows = subprocess.run(
                ["nvidia-smi", "--query-gpu=index,uuid,name,driver_version",
                 "--format=csv,noheader"], capture_output=True, text=True, timeout=20,
            ).stdout.strip().splitlines()
        except (OSError, subprocess.SubprocessError):
            rows = []
        wanted = [v.strip() for v in visible.split(",")] if visible else None
        gpus = []
        for row in rows:
            index, uid, name, driver = [part.strip() for part in row.split(",")][:4]
            if wanted is None or index in wanted or uid in wanted:
                gpus.append((name, driver))
        if gpus:
            info.update(gpu=gpus[0][0], gpu_count=len(gpus), driver=gpus[0][1])
    info["cuda_visible_devices"] = visible
    return info

env = dict(os.environ)
env.update(run["env"])
env[run["token_variable"]] = token
if not run["gpu"]:
    env["CUDA_VISIBLE_DEVICES"] = ""
argv, stdin, status, cgroup = ["/bin/sh", "-c", command], subprocess.DEVNULL, None, None
if run["sandbox"]:
    try:
        argv, env, cgroup = sandboxed(env)
    except Exception as error:
        report("start", {"hardware": hardware(), "before": hashes()})
        out.write(("[ratchet] no sandbox on this node: %s\n" % error).encode())
        report("end", {"exit": 126, "wall": 0.0, "leftovers": 0, "after": hashes(),
                       "refused": "no sandbox on the Ray node: %s" % error})
        sys.exit(126)
    status, stdin = os.pipe()
    os.set_inheritable(status, False)
report("start", {"hardware": hardware(), "before": hashes()})
if run["gpu"] and not os.environ.get("CUDA_VISIBLE_DEVICES"):
    out.write(b"[ratchet] Ray set no CUDA_VISIBLE_DEVICES for this job: it sees every GPU of "
              b"its node\n")
started = time.time()
child = subprocess.Popen(argv, env=env, stdin=stdin, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, start_new_session=True)
if status is not None:
    os.close(stdin)
timed_out = []

def stop(signum, frame):
    try:
        os.killpg(child.pid, signum)
    except OSError:
        pass
    kill_leftovers()

def deadline():
    # The budget is enforced here, on the node, not only by the client's stop_job.
    timed_out.append(True)
    stop(signal.SIGKILL, None)

timer = threading.Timer(run["timeout"], deadline)
timer.daemon = True
timer.start()

signal.signal(signal.SIGTERM, stop)
signal.signal(signal.SIGINT, stop)
last = b"\n"
while True:
    chunk = os.read(child.stdout.fileno(), 65536)
    if not chunk:
        break
    out.write(chunk)
    out.flush()
    last = chunk[-1:]
code = child.wait()
timer.cancel()
wall = time.time() - started
if last != b"\n":
    out.write(b"\n")
count = len(with_token())
kill_leftovers()
code = code if code >= 0 else 128 - code
end = {"exit": code, "wall": wall, "leftovers": count, "timed_out": bool(timed_out),
       "after": hashes([p for p in run["locked"] if p not in run["consumable"]])}
if status is not None:
    said = os.read(status, 4096).decode("ascii", "replace").splitlines()
    words = said[0].split() if len(said) == 1 else []
    if len(words) == 4 and words[0] == "exit" and words[1] == str(code):
        end["leftovers"] = int(words[3]) if words[3].isdigit() else 1
    elif not timed_out:
        end["refused"] = "the sandbox's first process was killed or its report was forged"
    if cgroup:
        for _ in range(20):
            try:
                os.rmdir(cgroup)
                break
            except OSError:
                time.sleep(0.05)
report("end", end)
os.chdir(shipped)
shutil.rmtree(work, ignore_errors=True)
sys.exit(code)
"""

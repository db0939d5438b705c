#!/usr/bin/env python3
"""Local job runner with Kaldi's run.pl interface (the espnet wheel ships none):

    run.pl [--gpu N] [--mem X] [--num_threads N] [--max_jobs_run N] [JOB=1:N] <log> <command ...>

Runs the command (one process per JOB index, JOB replaced in the log path and the command) with
stdout/stderr appended to the log, a header with the command and a footer with the exit status and
time, and exits non-zero if any job failed (naming its log). An existing log is appended to, never
truncated: a rerun keeps the record of earlier attempts (each starts with a "# Started at" line).
The command is one shell string, or several words that are quoted as given (so paths with spaces
survive). --gpu/--mem are accepted for compatibility; local jobs share the machine's devices.
"""
import os
import re
import shlex
import subprocess
import sys
import time


def main(argv):
    opts = {"max_jobs_run": os.cpu_count() or 1}
    while argv and argv[0].startswith("--"):
        key = argv[0][2:].replace("-", "_")
        if "=" in key:
            key, value = key.split("=", 1)
            argv = argv[1:]
        else:
            if len(argv) < 2:
                sys.exit(f"run.pl: option --{key} needs a value")
            value, argv = argv[1], argv[2:]
        opts[key] = value
    jobs = [None]
    m = re.fullmatch(r"([A-Za-z_]+)=(\d+):(\d+)", argv[0]) if argv else None
    if m:
        var, lo, hi = m.group(1), int(m.group(2)), int(m.group(3))
        jobs = [(var, i) for i in range(lo, hi + 1)]
        argv = argv[1:]
    if len(argv) < 2:
        sys.exit("usage: run.pl [options] [JOB=1:N] <log> <command ...>")
    log, command = argv[0], argv[1:]
    cmd_line = shlex.join(command) if len(command) > 1 else command[0]
    running, failed = [], []
    for job in jobs:
        this_log, this_cmd = log, cmd_line
        if job:
            var, i = job
            this_log = re.sub(rf"\b{var}\b", str(i), log)
            this_cmd = re.sub(rf"\b{var}\b", str(i), cmd_line)
        os.makedirs(os.path.dirname(this_log) or ".", exist_ok=True)
        f = open(this_log, "a")
        f.write(f"# {this_cmd}\n# Started at {time.ctime()}\n")
        f.flush()
        p = subprocess.Popen(["bash", "-c", this_cmd], stdout=f, stderr=subprocess.STDOUT)
        running.append((p, f, this_log, time.time()))
        while len([r for r in running if r[0].poll() is None]) >= int(opts["max_jobs_run"]):
            time.sleep(0.2)
    for p, f, this_log, start in running:
        rc = p.wait()
        f.write(f"# Accounting: time={int(time.time() - start)} threads=1\n# Ended (code {rc}) at {time.ctime()}\n")
        f.close()
        if rc != 0:
            failed.append(this_log)
    if failed:
        sys.exit(f"run.pl: {len(failed)} / {len(running)} failed, see {failed[0]}")


if __name__ == "__main__":
    main(sys.argv[1:])

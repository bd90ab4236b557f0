"""A real single-node SLURM cluster on loopback: munged, slurmctld and slurmd from Debian's packages.

Everything lives in one temp dir (munge key and socket, slurm.conf, state and spool dirs, logs); the daemons get
free loopback ports and are killed, by pid, on `stop()`. Clients find the cluster through `SLURM_CONF`, which
`env()` returns for the subprocesses the tests start (sbatch, squeue, scancel, submitit's jobs inherit it).

No accounting (no slurmdbd), so `sacct` fails: the project's SLURM launcher does not depend on it (it reads
job states from `squeue`). Job step credentials live 10 s (`cred_expire`, default 120 s), which is also how long a
requeued job waits before it starts again. Process tracking by /proc (proctrack/linuxproc), no task plugin, no cgroups: it runs
in a container as root. The node is this machine, with one CPU slot more than its cores (see `SlurmdParameters` below); memory is not a
consumable resource.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
from pathlib import Path

from tests.services import ServiceUnavailable, apt_ensure, free_port, wait_until

PACKAGES = {"munge": "/usr/sbin/munged", "slurmctld": "/usr/sbin/slurmctld", "slurmd": "/usr/sbin/slurmd",
            "slurm-client": "sbatch"}
PARTITION = "debug"
NODE = "tfnode"

SLURM_CONF = """\
ClusterName=transferfactors
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={munge_socket},cred_expire=10
StateSaveLocation={root}/ctld-state
SlurmdSpoolDir={root}/slurmd-spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SwitchType=switch/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=3
MinJobAge=600
MessageTimeout=20
# The node offers one CPU slot more than the machine has (config_overrides: slurmd takes the configured count):
# tests/test_slurm.py's time-limit case keeps a job waiting on a lock (no CPU used) beside the other cases.
SlurmdParameters=config_overrides
NodeName={node} NodeHostname={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={mem_mb} State=UNKNOWN
PartitionName={partition} Nodes={node} Default=YES MaxTime=INFINITE State=UP
"""


class SlurmCluster:
    """Start with `SlurmCluster().start()`; `env()` for clients; `stop()` kills the daemons and removes the dir."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="tf-slurm-"))
        self.conf = self.root / "slurm.conf"
        self.pids: list[int] = []

    def env(self) -> dict[str, str]:
        return {"SLURM_CONF": str(self.conf)}

    def run(self, *cmd: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
        """A SLURM client command (squeue, scancel, ...) against this cluster."""
        return subprocess.run(cmd, env={**os.environ, **self.env()}, capture_output=True, text=True,
                              check=check, timeout=timeout)

    def start(self) -> "SlurmCluster":
        apt_ensure(PACKAGES)
        try:
            self._start_munge()
            self._write_conf()
            self._spawn("/usr/sbin/slurmctld", "-D", "-f", str(self.conf), log="slurmctld.out")
            self._spawn("/usr/sbin/slurmd", "-D", "-N", NODE, "-f", str(self.conf), log="slurmd.out")
            wait_until(self._node_idle, 60, f"SLURM node {NODE} (logs in {self.root})", interval=0.5)
        except BaseException:
            self.stop(keep_logs=True)
            raise
        return self

    def _spawn(self, *cmd: str, log: str) -> None:
        out = open(self.root / log, "wb")
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **self.env()},
                                start_new_session=True)
        self.pids.append(proc.pid)

    def _start_munge(self) -> None:
        munge = self.root / "munge"
        munge.mkdir(mode=0o700)
        key = munge / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        self.munge_socket = munge / "munge.socket"
        self._spawn("/usr/sbin/munged", "-F", "--force", f"--socket={self.munge_socket}", f"--key-file={key}",
                    f"--pid-file={munge / 'munged.pid'}", f"--log-file={munge / 'munged.log'}",
                    f"--seed-file={munge / 'munged.seed'}", log="munged.out")
        wait_until(self.munge_socket.exists, 20, f"munged socket {self.munge_socket}")

    def _write_conf(self) -> None:
        for d in ("ctld-state", "slurmd-spool"):
            (self.root / d).mkdir()
        mem_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
        self.conf.write_text(SLURM_CONF.format(
            host=socket.gethostname(), ctld_port=free_port(), slurmd_port=free_port(), root=self.root,
            munge_socket=self.munge_socket, node=NODE, partition=PARTITION, cpus=(os.cpu_count() or 1) + 1,
            mem_mb=mem_mb // 2))

    def _node_idle(self) -> bool:
        r = self.run("sinfo", "-h", "-N", "-o", "%T", check=False, timeout=10)
        if any(pid_dead(p) for p in self.pids):
            raise ServiceUnavailable(f"a SLURM daemon exited; logs in {self.root}: {self.log_tail()}")
        return r.returncode == 0 and r.stdout.strip() in ("idle", "mixed", "allocated")

    def log_tail(self) -> str:
        return " | ".join(p.name + ": " + p.read_text(errors="replace")[-400:]
                          for p in sorted(self.root.glob("*.out")) + sorted(self.root.glob("*.log")))

    def stop(self, keep_logs: bool = False) -> None:
        if self.conf.exists() and self.pids:  # this cluster's jobs, before its daemons
            self.run("scancel", "--user", "root", check=False)
        for pid in reversed(self.pids):  # slurmd, slurmctld, then munged
            try:
                os.killpg(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            try:
                wait_until(lambda: pid_dead(pid), 10, f"pid {pid} to exit")
            except ServiceUnavailable:
                os.killpg(pid, signal.SIGKILL)
        self.pids.clear()
        if not keep_logs:
            shutil.rmtree(self.root, ignore_errors=True)


def pid_dead(pid: int) -> bool:
    """True once `pid` (a child of this process) has exited; reaps it."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return done == pid

"""cellnb on a real Slurm: a one-node cluster (munge, slurmctld, slurmd) on this machine.

The HPC path as a user takes it: ``annotate`` through dask-jobqueue's
``SLURMCluster`` with the configuration notebook 08 and docs/hpc.md show, a worker
job cancelled with ``scancel`` mid-run, a training job submitted with ``sbatch``
from the docs' template, cancelled mid-epoch and submitted again, and a job that
can never start. Starting slurmd needs root and Debian's ``slurm-wlm`` + ``munge``
(``make test`` installs them as root); elsewhere these tests are skipped, saying why.

Everything runs on 127.0.0.1 with ports chosen free; the fixture stops every daemon
it started, by PID, and cancels every job first.
"""

import ast
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import cellnb
from cellnb import weights
from cellnb.data import synthetic_pairs, write_pairs
from cellnb.io import Record

pytestmark = pytest.mark.slurm

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "08_hpc.ipynb"
HPC_DOC = ROOT / "docs" / "hpc.md"
TEMPLATE = ROOT / "docs" / "slurm" / "train.sbatch"
_SBIN = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
_NEEDED = ("munged", "mungekey", "slurmctld", "slurmd", "sbatch", "squeue", "scancel", "sinfo")


def _why_not() -> str:
    """Why a one-node Slurm cannot run here ('' when it can)."""
    if not sys.platform.startswith("linux"):
        return "Slurm runs on Linux only"
    if os.geteuid() != 0:
        return "starting slurmd needs root (make test runs these tests as root on Debian)"
    missing = [name for name in _NEEDED if shutil.which(name, path=_SBIN) is None]
    if missing:
        return (f"Slurm is not installed ({', '.join(missing)} not found; `make slurm` installs "
                "Debian's slurmctld, slurmd, slurm-client and munge as root)")
    try:
        import dask_jobqueue  # noqa: F401
    except ImportError:
        return "dask-jobqueue is not installed (the hpc extra)"
    return ""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class OneNodeSlurm:
    """munged, slurmctld and slurmd for one node, in `folder`, on 127.0.0.1."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.conf = folder / "slurm.conf"
        self.node = socket.gethostname().split(".")[0]
        self.cpus = os.cpu_count()
        total_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
        self.memory_mb = min(8000, int(total_mb * 0.75))  # what slurmd finds, or less
        self.env = {**os.environ, "SLURM_CONF": str(self.conf), "PATH": _SBIN}
        self.daemons: list[tuple[str, subprocess.Popen]] = []
        self.steps_before: set[int] = set()

    def start(self) -> None:
        self.steps_before = set(_slurmstepds())
        munge = self.folder / "munge"
        for sub in ("munge", "state", "spool", "log"):
            (self.folder / sub).mkdir(mode=0o700)
        socket_path = munge / "munge.socket"
        subprocess.run([self._bin("mungekey"), "--create", "--keyfile", str(munge / "munge.key")],
                       check=True, capture_output=True)
        self._spawn("munged", [self._bin("munged"), "--foreground", "--force",
                               "--key-file", str(munge / "munge.key"),
                               "--socket", str(socket_path),
                               "--pid-file", str(munge / "munged.pid"),
                               "--log-file", str(munge / "munged.log"),
                               "--seed-file", str(munge / "munged.seed")])
        self._wait(socket_path.exists, 20, "munged's socket")
        log = self.folder / "log"
        self.conf.write_text("\n".join([
            "ClusterName=cellnbtest",
            f"SlurmctldHost={self.node}(127.0.0.1)",
            f"SlurmctldPort={_free_port()}",
            f"SlurmdPort={_free_port()}",
            "AuthType=auth/munge", f"AuthInfo=socket={socket_path}", "CredType=cred/munge",
            "SlurmUser=root", "SlurmdUser=root",
            f"StateSaveLocation={self.folder / 'state'}",
            f"SlurmdSpoolDir={self.folder / 'spool'}",
            f"SlurmctldPidFile={self.folder / 'slurmctld.pid'}",
            f"SlurmdPidFile={self.folder / 'slurmd.pid'}",
            f"SlurmctldLogFile={log / 'slurmctld.log'}", f"SlurmdLogFile={log / 'slurmd.log'}",
            # no cgroups in a container: processes tracked by /proc, no task binding
            "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none",
            "JobAcctGatherType=jobacct_gather/none", "MpiDefault=none",
            "SelectType=select/cons_tres", "SelectTypeParameters=CR_Core_Memory",
            "ReturnToService=2", "KillWait=5", "InactiveLimit=0", "MinJobAge=300",
            f"NodeName={self.node} NodeAddr=127.0.0.1 CPUs={self.cpus} "
            f"RealMemory={self.memory_mb} State=UNKNOWN",
            f"PartitionName=debug Nodes={self.node} Default=YES MaxTime=INFINITE State=UP",
            ""]))
        self._spawn("slurmctld", [self._bin("slurmctld"), "-D", "-c", "-f", str(self.conf)])
        self._spawn("slurmd", [self._bin("slurmd"), "-D", "-f", str(self.conf)])
        self._wait(lambda: self.sinfo() == "idle", 60, f"node {self.node} to be idle")

    def _bin(self, name: str) -> str:
        return shutil.which(name, path=_SBIN)

    def _spawn(self, name: str, cmd: list[str]) -> None:
        with open(self.folder / "log" / f"{name}.out", "ab") as out:
            process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=self.env,
                                       start_new_session=True)
        self.daemons.append((name, process))

    def _wait(self, condition, seconds: float, what: str) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for name, process in self.daemons:
                if process.poll() is not None:
                    raise RuntimeError(f"{name} exited ({process.returncode}) while waiting for "
                                       f"{what}:\n{self.logs()}")
            if condition():
                return
            time.sleep(0.2)
        raise TimeoutError(f"no {what} after {seconds} s:\n{self.logs()}")

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-2000:]}"
                         for p in sorted((self.folder / "log").glob("*")) if p.is_file())

    def run(self, *cmd: str, cwd=None, check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run([self._bin(cmd[0]), *cmd[1:]], env=self.env, cwd=cwd,
                              capture_output=True, text=True, timeout=60)
        if check and done.returncode:
            raise RuntimeError(f"{' '.join(cmd)}: {done.stderr}")
        return done

    def sinfo(self) -> str:
        return self.run("sinfo", "-h", "-N", "-o", "%t", check=False).stdout.strip()

    def jobs(self) -> dict[str, str]:
        """{job id: state} of the jobs in the queue."""
        out = self.run("squeue", "-h", "-o", "%i %T").stdout
        return dict(line.split() for line in out.splitlines() if line.strip())

    def job_state(self, job_id: str) -> str:
        out = self.run("scontrol", "show", "job", str(job_id), check=False).stdout
        for word in out.split():
            if word.startswith("JobState="):
                return word.split("=", 1)[1]
        return "GONE"

    def wait_job(self, job_id: str, states: set, seconds: float = 120) -> str:
        self._wait(lambda: self.job_state(job_id) in states, seconds,
                   f"job {job_id} in {sorted(states)}")
        return self.job_state(job_id)

    def stop(self) -> None:
        """Cancel every job, wait for them to end, then stop the daemons this started."""
        try:
            ids = list(self.jobs())
            if ids:
                self.run("scancel", *ids, check=False)
                deadline = time.monotonic() + 30
                while self.jobs() and time.monotonic() < deadline:
                    time.sleep(0.5)
            # a job leaves the queue a moment before its step supervisor (slurmstepd) exits
            deadline = time.monotonic() + 30
            while set(_slurmstepds()) - self.steps_before and time.monotonic() < deadline:
                time.sleep(0.2)
        finally:
            for _, process in reversed(self.daemons):
                if process.poll() is None:
                    process.terminate()
                    try:
                        process.wait(20)
                    except subprocess.TimeoutExpired:
                        process.kill()
                        process.wait(10)


def _slurmstepds() -> list[int]:
    """PIDs of slurmstepd processes (a job step's supervisor) on this machine."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "slurmstepd":
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    reason = _why_not()
    if reason:
        pytest.skip(reason)
    before = set(_slurmstepds())
    cluster = OneNodeSlurm(tmp_path_factory.mktemp("slurm"))
    old = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(cluster.conf)  # dask-jobqueue's sbatch calls read it
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        if old is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = old
    # nothing left behind: every daemon stopped, no job step still running
    assert all(process.poll() is not None for _, process in cluster.daemons)
    assert set(_slurmstepds()) <= before


def _notebook_cluster_options() -> tuple[str, dict]:
    """The ``cluster_options = dict(...)`` of notebook 08, as text and evaluated."""
    for cell in json.loads(NOTEBOOK.read_text())["cells"]:
        source = "".join(cell["source"])
        if cell["cell_type"] != "code" or "cluster_options = dict(" not in source:
            continue
        for node in ast.parse(source).body:
            if isinstance(node, ast.Assign) and node.targets[0].id == "cluster_options":
                text = ast.get_source_segment(source, node)
                # the notebook's `plan` names its own weights folder; the tests set the
                # variables themselves, so here it is None
                return text, eval(compile(ast.Expression(node.value), "notebook 08", "eval"),
                                  {"weights": weights, "plan": None})
    raise AssertionError("notebook 08 defines no `cluster_options = dict(...)`")


def test_docs_and_notebook_show_the_configuration_these_tests_run():
    """docs/hpc.md holds notebook 08's cluster options word for word, and the notebook
    prints the job script; the template's resources are those options' too."""
    text, options = _notebook_cluster_options()
    assert text in HPC_DOC.read_text()
    notebook = NOTEBOOK.read_text()
    assert "SLURMCluster(**cluster_options)" in notebook and "job_script()" in notebook
    assert options["job_script_prologue"] == weights.job_prologue()
    template = TEMPLATE.read_text()
    assert f"#SBATCH --cpus-per-task={options['cores']}" in template
    assert f"#SBATCH --time={options['walltime']}" in template
    assert f"#SBATCH --mem={options['memory'].removesuffix('B')}" in template
    assert "docs/slurm/train.sbatch" in HPC_DOC.read_text()


def _cluster(slurm, tmp_path, **changes):
    from dask_jobqueue import SLURMCluster

    _, options = _notebook_cluster_options()
    # what is this machine's, not the configuration's: loopback only, logs in the test folder
    return SLURMCluster(**{**options, **changes}, interface="lo",
                        log_directory=str(tmp_path / "worker-logs"))


def _record_files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_annotate_on_slurm_loses_nothing_when_a_worker_job_is_cancelled(slurm, tmp_path,
                                                                       monkeypatch):
    from dask.distributed import Client

    # the variables a compute node needs reach the worker through the prologue alone
    # (the jobs run with --export=NONE: nothing of this process's environment leaks in)
    monkeypatch.setenv("MICROSAM_CACHEDIR", str(tmp_path / "weights"))
    monkeypatch.setenv("CELLNB_DATA_DIR", str(tmp_path / "data"))
    pairs_folder = tmp_path / "pairs"
    write_pairs(synthetic_pairs(20, shape=(192, 192), n_cells=16, seed=4), pairs_folder)
    config = cellnb.Config.from_dict({"locate": {"method": "auto"}})
    local = cellnb.annotate(pairs_folder, tmp_path / "local", config=config, model="watershed",
                            progress=False)
    cancelled = {}
    with _cluster(slurm, tmp_path, job_script_prologue=weights.job_prologue()) as cluster, \
            Client(cluster) as client:
        script = cluster.job_script()
        assert "--export=NONE" in script
        assert f"export MICROSAM_CACHEDIR={tmp_path / 'weights'}" in script
        cluster.scale(jobs=2)
        client.wait_for_workers(2, timeout=120)
        assert len(slurm.jobs()) == 2
        seen = client.run(lambda: {k: os.environ.get(k) for k in ("MICROSAM_CACHEDIR",
                                                                  "CELLNB_DATA_DIR",
                                                                  "VIRTUAL_ENV")})
        for worker_env in seen.values():
            assert worker_env["MICROSAM_CACHEDIR"] == str(tmp_path / "weights")
            assert worker_env["CELLNB_DATA_DIR"] == str(tmp_path / "data")
            assert worker_env["VIRTUAL_ENV"] == (sys.prefix if sys.prefix != sys.base_prefix
                                                 else None)

        def cancel_a_busy_worker(done, total):
            """After the first pairs: scancel the job of a worker that holds work."""
            if cancelled:
                return
            busy = [w for w, keys in client.processing().items() if keys]
            if not busy:
                return
            name = client.scheduler_info()["workers"][busy[0]]["name"]
            job_id = cluster.workers[name].job_id
            slurm.run("scancel", job_id)
            cancelled.update(job_id=job_id, done=done, worker=busy[0])
            deadline = time.monotonic() + 60  # the scheduler notices the worker has gone
            while busy[0] in client.scheduler_info()["workers"] and time.monotonic() < deadline:
                time.sleep(0.2)

        summary = cellnb.annotate(pairs_folder, tmp_path / "slurm", config=config,
                                  model="watershed", client=client, progress=False,
                                  callback=cancel_a_busy_worker)
        assert cancelled, "no worker was ever busy"
        assert cancelled["done"] < 20  # it was cancelled while pairs were left
        assert cancelled["worker"] not in client.scheduler_info()["workers"]
    assert slurm.job_state(cancelled["job_id"]) in {"CANCELLED", "GONE"}
    # every pair once, none lost, none twice, and the records those of an in-process run
    assert summary["pair_id"].tolist() == local["pair_id"].tolist()
    assert (summary["status"] == "done").all()
    records = tmp_path / "slurm" / "records"
    assert sorted(p.name for p in records.iterdir()) == sorted(local["pair_id"])
    assert _record_files(records) == _record_files(tmp_path / "local" / "records")


def test_a_worker_job_that_can_never_start_fails_with_sbatchs_reason(slurm, tmp_path):
    from dask.distributed import Client

    pairs_folder = tmp_path / "pairs"
    write_pairs(synthetic_pairs(2, shape=(64, 64), n_cells=3, seed=1), pairs_folder)
    too_much = f"{2 * slurm.memory_mb}MB"  # twice what the node has
    t0 = time.monotonic()
    with _cluster(slurm, tmp_path, memory=too_much) as cluster, Client(cluster) as client:
        cluster.scale(jobs=1)
        with pytest.raises(RuntimeError, match="(?s)can never start.*Requested node configuration "
                                               "is not available.*memory, cores"):
            cellnb.annotate(pairs_folder, tmp_path / "out", model="watershed", client=client,
                            progress=False)
        assert time.monotonic() - t0 < 60  # bounded: well before worker_timeout (300 s)
    assert not list((tmp_path / "out" / "records").iterdir())  # nothing half-written
    assert slurm.jobs() == {}


def test_a_job_that_waits_in_the_queue_times_out_with_its_state(slurm, tmp_path):
    """A job that could run but does not start (here: held) ends in an error naming the
    job's state and reason once `worker_timeout` has passed, not a hang."""
    from dask.distributed import Client

    pairs_folder = tmp_path / "pairs"
    write_pairs(synthetic_pairs(1, shape=(64, 64), n_cells=3, seed=1), pairs_folder)
    with _cluster(slurm, tmp_path, job_extra_directives=["--export=NONE", "--hold"]) as cluster, \
            Client(cluster) as client:
        cluster.scale(jobs=1)
        with pytest.raises(RuntimeError, match=r"(?s)no worker for 15 s.*its SLURM jobs: \d+ "
                                               r"PENDING \(JobHeldUser\)"):
            cellnb.annotate(pairs_folder, tmp_path / "out", model="watershed", client=client,
                            progress=False, worker_timeout=15)


def _dataset(tmp_path):
    pairs = synthetic_pairs(3, shape=(96, 96), n_cells=8, seed=0)
    records = [Record(p.id, p.tl, p.labels, p.truth) for p in pairs]
    return cellnb.export(records, tmp_path / "dataset", splits={"train": 2, "val": 1})


TRAIN = ["--recipe", "unet", "--epochs", "4", "--steps-per-epoch", "25", "--batch-size", "2",
         "--patch-shape", "64", "64", "--device", "cpu", "--seed", "0"]


def test_training_job_cancelled_mid_epoch_resumes_to_the_uninterrupted_weights(slurm,
                                                                               tmp_path):
    import torch

    dataset = _dataset(tmp_path)
    # the docs' template, its prologue block replaced by this environment's lines
    template = TEMPLATE.read_text()
    head, rest = template.split("# >>> prologue", 1)
    _, tail = rest.split("# <<< prologue\n", 1)
    script = tmp_path / "train.sbatch"
    script.write_text(head + "\n".join(weights.job_prologue()) + "\n" + tail)
    run = tmp_path / "run"
    submit = ["sbatch", "--parsable", str(script), str(dataset), "--out", str(run), *TRAIN]
    first = slurm.run(*submit, cwd=tmp_path).stdout.strip()
    history = run / "history.csv"
    slurm._wait(lambda: history.is_file() and len(history.read_text().splitlines()) >= 2,
                240, "the first epoch of the training job")
    slurm.run("scancel", first)  # epoch 0 is done: it is in epoch 1
    assert slurm.wait_job(first, {"CANCELLED", "GONE"}) in {"CANCELLED", "GONE"}
    info = json.loads((run / "trained.json").read_text())
    assert info["status"] == "training"  # not finished
    epochs_done = len(history.read_text().splitlines()) - 1
    assert 1 <= epochs_done < 4

    second = slurm.run(*submit, cwd=tmp_path).stdout.strip()  # the same command again
    assert slurm.wait_job(second, {"COMPLETED", "FAILED", "GONE"}, 300) in {"COMPLETED", "GONE"}
    log = (tmp_path / f"cellnb-train-{second}.log").read_text()
    info = json.loads((run / "trained.json").read_text())
    assert info["status"] == "finished", log
    assert [(r["epoch"], r["slurm_job_id"]) for r in info["resumed"]] == [(epochs_done, second)]

    reference = cellnb.train(dataset, recipe="unet", out=tmp_path / "reference", epochs=4,
                             steps_per_epoch=25, batch_size=2, patch_shape=(64, 64),
                             device="cpu", seed=0, progress=False)
    a = torch.load(run / "weights" / "last.pt", weights_only=True)["model_state"]
    b = torch.load(reference.path / "weights" / "last.pt", weights_only=True)["model_state"]
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)
    np.testing.assert_array_equal(
        cellnb.load_trained(run).history["epoch"], reference.history["epoch"])

"""Two processes on this machine train like one process with all their devices.

Each process starts ``jax.distributed.initialize`` on localhost with 2
forced CPU devices and gloo collectives, so the mesh has 4 devices over 2
processes, as on a 2-host cluster. The result must equal one process with 4
devices on the same global batches, and epochs, steps and examples must be
counted over the global batch.
"""
import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SCRIPT = r"""
import json, sys
import numpy as np
import neurojax  # before jax starts: its XLA:CPU flags
import jax
num_processes, process_id, port, workdir, data_dir, batch_size = sys.argv[1:7]
num_processes, process_id = int(num_processes), int(process_id)
if num_processes > 1:
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=f"localhost:{port}",
                               num_processes=num_processes, process_id=process_id)
from configs import supervised_digits
from neurojax.train.loop import train_and_evaluate

config = supervised_digits.get_config()
config.dataset.data_dir = data_dir
config.dataset.batch_size = int(batch_size)  # per process
config.model.widths = (32,)
config.train.num_epochs = 2
config.train.steps_per_call = 11
config.train.log_every = 11
config.train.eval_every = 11
config.train.checkpoint_every = 11
result = train_and_evaluate(config, workdir, progress=False)
assert jax.device_count() == 4, jax.device_count()
if process_id == 0:
    leaves = [np.asarray(x) for x in jax.tree.leaves(jax.device_get(result.state.params))]
    np.savez(workdir + "/params.npz", *leaves)
    print("RESULT " + json.dumps({"num_steps": result.num_steps, **result.eval_metrics}))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _env(devices: int) -> dict:
    return dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
                PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))


def _result(stdout: str) -> dict:
    line = [l for l in stdout.splitlines() if l.startswith("RESULT ")]
    assert line, stdout
    return json.loads(line[-1][len("RESULT "):])


@pytest.mark.slow
def test_two_processes_equal_one_process_with_their_devices(tmp_path):
    data_dir = str(tmp_path / "tfds")
    one = subprocess.run([sys.executable, "-c", SCRIPT, "1", "0", "0", str(tmp_path / "one"),
                          data_dir, "64"], cwd=ROOT, env=_env(4), capture_output=True,
                         text=True, timeout=300)
    assert one.returncode == 0, one.stderr[-3000:]
    port = str(_free_port())
    procs = [subprocess.Popen([sys.executable, "-c", SCRIPT, "2", str(i), port,
                               str(tmp_path / "two"), data_dir, "32"], cwd=ROOT, env=_env(2),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    single, multi = _result(one.stdout), _result(outs[0][0])

    # 2 epochs of 1437 digits at a global batch of 64: 22 steps, 1408 examples per epoch
    assert single["num_steps"] == multi["num_steps"] == 44
    assert multi["epoch"] == pytest.approx(2.0) and multi["examples_seen"] == 44 * 64
    assert multi["accuracy"] == pytest.approx(single["accuracy"], abs=1e-6)
    a = np.load(tmp_path / "one" / "params.npz")
    b = np.load(tmp_path / "two" / "params.npz")
    for key in a.files:
        np.testing.assert_allclose(a[key], b[key], rtol=1e-5, atol=1e-6)
    records = [json.loads(l) for l in open(tmp_path / "two" / "metrics.jsonl")]
    assert [r["step"] for r in records if r["split"] == "train"] == [11, 22, 33, 44]

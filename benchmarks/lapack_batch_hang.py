"""Reproduction: concurrent batched LAPACK calls on CPU can deadlock (jaxlib 0.10.2).

One jitted function holds ``k`` independent batched calls of one op
(``jnp.linalg.qr``, ``solve`` or ``eigh``) on a ``(batch, n, n)`` array of
random matrices; it is called ``reps`` times in a child process. The parent
kills a child that has used no CPU time for ``--stall`` seconds (a deadlock,
not slowness) or has run for ``--timeout`` seconds, and prints one line per
case:

    python benchmarks/lapack_batch_hang.py [--timeout 120] [--stall 15]

Plain jax only. Seen on 2 CPU cores, jax/jaxlib 0.10.2 (3 runs): with
``k = 2`` concurrent calls, ``qr`` stalls at batch 256 and 400 of 10x10
(within 50-1000 calls) and at batch 40 of 100x100, ``solve`` (getrf) at
batch 400; ``k = 1`` never stalled (300 calls at batch 4000) and ``qr`` at
batch <= 128 never stalled (1000 calls); ``eigh`` never stalled. A gdb
backtrace of a stalled process shows two XLA worker threads inside
``jax::ParallelBatchMap`` (from ``lapack_sorgqr_ffi``), waiting on an
``absl::BlockingCounter`` while every other worker of the Eigen pool waits
for work. Whether one run stalls is random; run it again if it does not.
"""
import argparse
import os
import subprocess
import sys
import time

CASES = [  # (op, batch, n, concurrent calls k, reps)
    ("qr", 4000, 10, 1, 300),
    ("qr", 64, 10, 2, 1000),
    ("qr", 400, 10, 2, 500),
    ("qr", 40, 100, 2, 200),
    ("solve", 400, 10, 2, 500),
    ("eigh", 4000, 10, 2, 100),
]


def child(op: str, batch: int, n: int, k: int, reps: int) -> None:
    import jax
    import jax.numpy as jnp

    def one(key):
        a = jax.random.normal(key, (batch, n, n))
        if op == "qr":
            return jnp.linalg.qr(a)[0].sum()
        if op == "solve":
            return jnp.linalg.solve(a, a[..., :1]).sum()
        return jnp.linalg.eigh(a + jnp.swapaxes(a, 1, 2))[1].sum()

    f = jax.jit(lambda key: sum(one(kk) for kk in jax.random.split(key, k)))
    for i in range(reps):
        jax.block_until_ready(f(jax.random.PRNGKey(i)))


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_case(case, timeout: float, stall: float) -> str:
    proc = subprocess.Popen([sys.executable, __file__, "--child", *map(str, case)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    t0 = last_change = time.time()
    last_cpu = -1.0
    while proc.poll() is None:
        time.sleep(1.0)
        now = time.time()
        try:
            cpu = cpu_seconds(proc.pid)
        except OSError:
            continue
        if cpu != last_cpu:
            last_cpu, last_change = cpu, now
        if now - last_change > stall or now - t0 > timeout:
            proc.kill()
            proc.wait()
            why = "no CPU time for" if now - last_change > stall else "still running after"
            return f"HUNG ({why} {stall if why.startswith('no') else timeout:.0f} s; killed)"
    if proc.returncode != 0:
        return f"error rc={proc.returncode}: {proc.stderr.read().decode()[-200:]}"
    return f"ok ({time.time() - t0:.1f} s)"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--stall", type=float, default=15.0)
    parser.add_argument("--child", nargs=5)
    args = parser.parse_args()
    if args.child:
        op, *rest = args.child
        child(op, *map(int, rest))
        return
    import jax
    print(f"jax {jax.__version__}, {os.cpu_count()} CPUs")
    for case in CASES:
        op, batch, n, k, reps = case
        print(f"{op:5s} batch {batch:5d} of {n}x{n}, {k} concurrent call(s), {reps} calls: "
              f"{run_case(case, args.timeout, args.stall)}", flush=True)


if __name__ == "__main__":
    main()

"""A stand-in `srun` for tests: starts the command once per task on FAKE_SRUN_NODES simulated nodes
("node-a,node-b") with the variables Slurm gives each task, and waits for them all. Understands
--ntasks-per-node N and --gpus-per-task 1 (each task sees one GPU, CUDA_VISIBLE_DEVICES=its local id).
The command is run as given: whatever the calling shell expanded stays expanded, as with the real srun."""

import os
import subprocess
import sys

args = sys.argv[1:]
per_node, gpus_per_task = 1, None
while args and args[0].startswith("--"):
    opt = args.pop(0)
    if opt == "--ntasks-per-node":
        per_node = int(args.pop(0))
    elif opt == "--gpus-per-task":
        gpus_per_task = int(args.pop(0))
nodes = os.environ.get("FAKE_SRUN_NODES", "node-a,node-b").split(",")
procs = []
for node_id, node in enumerate(nodes):
    for local in range(per_node):
        env = dict(os.environ, SLURMD_NODENAME=node, SLURM_NODEID=str(node_id), SLURM_LOCALID=str(local),
                   SLURM_PROCID=str(node_id * per_node + local), SLURM_NTASKS=str(per_node * len(nodes)),
                   SLURM_STEP_TASKS_PER_NODE=f"{per_node}(x{len(nodes)})", SLURM_JOB_ID="9001", SLURM_STEP_ID="0")
        if gpus_per_task == 1:
            env["CUDA_VISIBLE_DEVICES"] = str(local)
        procs.append(subprocess.Popen(args, env=env))
sys.exit(max(p.wait() for p in procs))

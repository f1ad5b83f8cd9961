"""A throwaway multi-node Ray cluster of real processes on 127.0.0.1, alive until stdin closes.

Run as a subprocess by tests/e2e/test_cluster.py, so the test session's own Ray is untouched:
``python tests/e2e/cluster_nodes.py '{"head": {...}, "nodes": [{...}, ...]}'``. It prints one
JSON line (GCS address, dashboard URL, client port, node ids) and shuts every node down when its
stdin closes or it gets SIGTERM. Every node runs in Ray's single-machine mode (see
sweep/cluster.py), so all of them listen on 127.0.0.1 only; RAY_TMPDIR (set by the caller)
keeps its session files and ``ray_current_cluster`` away from other Ray instances.
"""

from __future__ import annotations

import json
import os
import signal
import sys

os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # before Ray is imported: node IP stays 127.0.0.1


def main() -> None:
    from ray.cluster_utils import Cluster

    spec = json.loads(sys.argv[1])
    head_args = {"node_ip_address": "127.0.0.1", **spec.get("head", {})}
    cluster = Cluster(initialize_head=True, head_node_args=head_args)
    signal.signal(signal.SIGTERM, lambda *_: (cluster.shutdown(), os._exit(0)))
    try:
        nodes = [cluster.head_node]
        for index, args in enumerate(spec.get("nodes", []), start=1):
            # Its own temp dir, as a separate machine would have: nodes sharing one would unpack a
            # job's working_dir into the same folder and pull it from under each other's processes.
            temp_dir = os.path.join(os.environ.get("RAY_TMPDIR", "/tmp"), f"n{index}")
            nodes.append(cluster.add_node(node_ip_address="127.0.0.1", temp_dir=temp_dir, **args))
        cluster.wait_for_nodes()
        info = {
            "address": cluster.address,
            "dashboard": f"http://{cluster.webui_url}" if cluster.webui_url else None,
            "node_ids": [node.node_id for node in nodes],
        }
        print(json.dumps(info), flush=True)
        sys.stdin.read()
    finally:
        cluster.shutdown()


if __name__ == "__main__":
    main()

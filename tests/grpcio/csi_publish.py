"""A CSI client as a support engineer's tool would be: Python grpcio (gRPC
C-core) with default channel options, over the unix socket. Creates a
volume, publishes it at a target, writes through the mount, tries a
conflicting publish and unpublishes, printing one JSON line of what it saw
(the caller deletes the volume once it has looked at it).

Usage: csi_publish.py SOCKET TARGET GENERATED_STUBS_DIR
"""
import json
import os
import sys

import grpc

socket, target, stubs = sys.argv[1:4]
sys.path.insert(0, stubs)
import csi_pb2  # noqa: E402
import csi_pb2_grpc  # noqa: E402

channel = grpc.insecure_channel("unix://" + socket)
identity = csi_pb2_grpc.IdentityStub(channel)
controller = csi_pb2_grpc.ControllerStub(channel)
node = csi_pb2_grpc.NodeStub(channel)

cap = csi_pb2.VolumeCapability(
    mount=csi_pb2.VolumeCapability.MountVolume(),
    access_mode=csi_pb2.VolumeCapability.AccessMode(
        mode=csi_pb2.VolumeCapability.AccessMode.SINGLE_NODE_WRITER
    ),
)
seen = {"name": identity.GetPluginInfo(csi_pb2.GetPluginInfoRequest(), timeout=30).name}
volume = controller.CreateVolume(
    csi_pb2.CreateVolumeRequest(
        name="pvc-python",
        capacity_range=csi_pb2.CapacityRange(required_bytes=1 << 20),
        volume_capabilities=[cap],
    ),
    timeout=30,
).volume
seen["volume_id"] = volume.volume_id
node.NodePublishVolume(
    csi_pb2.NodePublishVolumeRequest(
        volume_id=volume.volume_id,
        target_path=target,
        volume_capability=cap,
        volume_context=volume.volume_context,
    ),
    timeout=30,
)
with open(os.path.join(target, "from-python"), "w") as f:
    f.write("written through the mount")
try:
    node.NodePublishVolume(
        csi_pb2.NodePublishVolumeRequest(
            volume_id=volume.volume_id,
            target_path=target,
            volume_capability=cap,
            readonly=True,
        ),
        timeout=30,
    )
    seen["conflict"] = "OK"
except grpc.RpcError as e:
    seen["conflict"] = e.code().name
node.NodeUnpublishVolume(
    csi_pb2.NodeUnpublishVolumeRequest(volume_id=volume.volume_id, target_path=target),
    timeout=30,
)
seen["mounted_after_unpublish"] = os.path.exists(os.path.join(target, "from-python"))
print(json.dumps(seen))

"""Analysis before and around training: communication cost (``comm``), throughput per micro
batch (``autobatch``), the gradient noise scale (``noise_scale``), and ``workload``, the plain
model / loss / batch form these tools take."""

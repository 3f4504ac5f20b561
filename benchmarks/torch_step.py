"""The same 2D SCN training step in PyTorch, for a side-by-side CPU comparison with benchmarks/train_step.py.

  python benchmarks/torch_step.py [--configs skull2d_cpu,skull2d_256] [--steps 20]

Same structure as scn_tf's SpatialConfigurationNet (4 levels of two 3x3 convs with dropout 0.5 between,
parallel 3x3 convs, average pooling, linear upsampling with additive skips, local heatmap conv; spatial
configuration at 1/downsampling with three k x k convs and a tanh conv, cubic upsampling), leaky ReLU 0.1,
the same Gaussian targets with learnable sigmas, loss of eq. (2) with weight decay on kernels and SGD with
Nesterov momentum, batch 1, on the same machine. Interpolation uses PyTorch's bilinear/bicubic
(align_corners=False) in place of scn_tf's fixed transposed-convolution kernels: the same work per
element. Both memory formats are timed. Skips with a message where PyTorch is not installed.
"""

from __future__ import annotations

import math
import os
import sys

from absl import app, flags

from common import median_seconds

FLAGS = flags.FLAGS
flags.DEFINE_list("configs", ["skull2d_cpu", "skull2d_256"], "Configurations (as in benchmarks/train_step.py).")
flags.DEFINE_integer("steps", 20, "Timed steps (median reported).")
flags.DEFINE_integer("warmup", 3, "Untimed steps first.")
flags.DEFINE_integer("threads", 0, "torch.set_num_threads (0: PyTorch's default).")

# name: (input x, y), filters, landmarks, spatial downsampling, spatial kernel
CONFIGS = {
    "skull2d_cpu": ((128, 160), 32, 19, 8, 11),
    "skull2d_256": ((256, 256), 64, 19, 16, 11),
    "skull2d_paper": ((512, 512), 128, 19, 16, 11),
}


def build(torch, filters: int, landmarks: int, downsampling: int, kernel: int, levels: int = 4):
    nn, functional = torch.nn, torch.nn.functional

    def conv(cin, cout, size=3):
        return nn.Conv2d(cin, cout, size, padding=size // 2)

    class SCN(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv0 = conv(1, filters)
            self.contracting = nn.ModuleList(
                nn.ModuleList([conv(filters, filters), nn.Dropout(0.5), conv(filters, filters)]) for _ in range(levels)
            )
            self.parallel = nn.ModuleList(conv(filters, filters) for _ in range(levels))
            self.local = conv(filters, landmarks)
            self.spatial = nn.ModuleList(
                [conv(landmarks, filters, kernel), conv(filters, filters, kernel), conv(filters, filters, kernel)]
            )
            self.spatial_out = conv(filters, landmarks, kernel)

        def forward(self, x):
            def act(t):
                return functional.leaky_relu(t, 0.1)

            node = act(self.conv0(x))
            skips = []
            for level, (first, dropout, second) in enumerate(self.contracting):
                node = act(second(dropout(act(first(node)))))
                skips.append(act(self.parallel[level](node)))
                if level < levels - 1:
                    node = functional.avg_pool2d(node, 2)
            node = skips[-1]
            for skip in reversed(skips[:-1]):
                node = skip + functional.interpolate(node, scale_factor=2, mode="bilinear", align_corners=False)
            local = self.local(node)
            node = functional.avg_pool2d(local, downsampling)
            for layer in self.spatial:
                node = act(layer(node))
            spatial = torch.tanh(self.spatial_out(node))
            spatial = functional.interpolate(spatial, scale_factor=downsampling, mode="bicubic", align_corners=False)
            return local * spatial

    return SCN()


def time_config(torch, name: str, channels_last: bool) -> float:
    (width, height), filters, landmarks, downsampling, kernel = CONFIGS[name]
    torch.manual_seed(0)
    model = build(torch, filters, landmarks, downsampling, kernel)
    sigmas = torch.nn.Parameter(torch.full((landmarks,), 2.0))
    optimizer = torch.optim.SGD(list(model.parameters()) + [sigmas], lr=1e-6, momentum=0.99, nesterov=True)
    kernels = [p for n, p in model.named_parameters() if n.endswith("weight")]
    image = torch.randn(1, 1, height, width)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        image = image.contiguous(memory_format=torch.channels_last)
    coords = torch.rand(1, landmarks, 2) * torch.tensor([width - 16.0, height - 16.0]) + 8
    ys, xs = torch.arange(height, dtype=torch.float32), torch.arange(width, dtype=torch.float32)

    def step():
        optimizer.zero_grad(set_to_none=True)
        predicted = model(image)
        gx = torch.exp(-((xs[None, None, :] - coords[..., 0, None]) ** 2) / (2 * sigmas[None, :, None] ** 2))
        gy = torch.exp(-((ys[None, None, :] - coords[..., 1, None]) ** 2) / (2 * sigmas[None, :, None] ** 2))
        target = 100.0 / (2 * math.pi * sigmas[None, :, None, None] ** 2) * gy[..., :, None] * gx[..., None, :]
        loss = 0.5 * ((predicted - target) ** 2).sum() + 20.0 * 0.5 * (sigmas**2).sum()
        loss = loss + 1e-3 * 0.5 * sum((k**2).sum() for k in kernels)
        loss.backward()
        optimizer.step()
        return float(loss)

    return median_seconds(step, FLAGS.steps, warmup=FLAGS.warmup)


def main(argv):
    del argv
    try:
        import torch
    except ImportError:
        print("PyTorch is not installed: skipped (pip install torch to compare)")
        return 0
    if FLAGS.threads:
        torch.set_num_threads(FLAGS.threads)
    print(
        f"PyTorch {torch.__version__}, {torch.get_num_threads()} threads on {os.cpu_count()} CPU cores; "
        f"median of {FLAGS.steps} steps after {FLAGS.warmup}",
        flush=True,
    )
    print("| configuration | input | filters | step (NCHW) | step (channels_last) |")
    print("|---|---|---|---|---|")
    for name in FLAGS.configs:
        if name not in CONFIGS:
            sys.exit(f"unknown configuration {name!r}; known: {sorted(CONFIGS)}")
        (width, height), filters = CONFIGS[name][:2]
        nchw, nhwc = (time_config(torch, name, last) for last in (False, True))
        print(f"| {name} | {width}x{height} | {filters} | {nchw * 1e3:.0f} ms | {nhwc * 1e3:.0f} ms |", flush=True)
    return 0


if __name__ == "__main__":
    app.run(main)

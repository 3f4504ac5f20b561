"""One training step of a tiny SCN in a fresh process, for the tf.distribute equivalence tests.

  python tests/distributed_step.py single OUT.npz        one replica, batch 2 (samples 0 and 1)
  python tests/distributed_step.py mirrored OUT.npz      two logical CPU devices, batch 1 each
  python tests/distributed_step.py multi_worker OUT.npz  this worker of TF_CONFIG's two, batch 1 each

Devices are configured before TensorFlow initialises, which is why this runs as its own process. The
initial weights are drawn with NumPy, so that every process starts from the same ones. Clipping is on and
active, to check that it acts on the gradients summed across replicas.
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import tensorflow as tf

MODE, OUT = sys.argv[1], sys.argv[2]
if MODE == "mirrored":
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

from scn_tf.configs import TrainingConfig  # noqa: E402
from scn_tf.models import SpatialConfigurationNet  # noqa: E402
from scn_tf.training import Trainer  # noqa: E402

rng = np.random.default_rng(7)
images = rng.normal(size=(2, 32, 32, 1)).astype(np.float32)
coords = rng.uniform(4, 27, size=(2, 2, 2)).astype(np.float32)
valid = np.array([[True, True], [True, False]])  # a missing landmark in sample 1

if MODE == "single":
    strategy = tf.distribute.get_strategy()
elif MODE == "mirrored":
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
else:
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
config = TrainingConfig(
    iterations=1,
    learning_rate=1e-3,
    momentum=0.9,
    clip_norm=5.0,
    alpha=20.0,
    weight_decay=1e-3,
    gamma=100.0,
    sigma_init=2.0,
)
with strategy.scope():
    model = SpatialConfigurationNet(
        2, 2, filters=8, levels=3, spatial_kernel_size=3, spatial_downsampling=4, dropout_rate=0.0
    )
trainer = Trainer(model, 2, config, os.path.dirname(OUT) + f"/{MODE}_{os.getpid()}", strategy)
trainer.build((1, 32, 32, 1))
initial = [np.random.default_rng(k).normal(0, 0.2, w.shape).astype(np.float32) for k, w in enumerate(model.weights)]
model.set_weights(initial)

if MODE == "single":
    batch = (tf.constant(images), tf.constant(coords), tf.constant(valid))
else:

    def replica_value(array):
        def value(context):
            worker = json.loads(os.environ.get("TF_CONFIG", "{}")).get("task", {}).get("index", 0)
            index = context.replica_id_in_sync_group if MODE == "mirrored" else worker
            return tf.constant(array[index : index + 1])

        return strategy.experimental_distribute_values_from_function(value)

    batch = tuple(replica_value(a) for a in (images, coords, valid))

terms = tf.function(trainer.train_step)(*batch)
replica_weights = [[np.asarray(v) for v in strategy.experimental_local_results(w.value)] for w in model.weights]
replica_sigmas = [np.asarray(v) for v in strategy.experimental_local_results(trainer.engine.sigmas)]
np.savez(
    OUT,
    replicas=strategy.num_replicas_in_sync,
    loss=float(terms["loss"]),
    gradient_norm=float(terms["gradient_norm"]),
    sigmas=replica_sigmas[0],
    sigma_spread=max(float(np.abs(s - replica_sigmas[0]).max()) for s in replica_sigmas),
    weight_spread=max(float(np.abs(c - copies[0]).max()) for copies in replica_weights for c in copies),
    moved=max(float(np.abs(copies[0] - i).max()) for copies, i in zip(replica_weights, initial, strict=True)),
    **{f"w{k}": copies[0] for k, copies in enumerate(replica_weights)},
)

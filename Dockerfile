# scn_tf on NVIDIA GPUs: the official TensorFlow GPU image of the newest version pyproject.toml admits.
#   docker build -t scn_tf .
#   docker run --gpus all -v /path/to/spine:/data -v $PWD/runs:/opt/scn_tf/runs scn_tf \
#       python experiments/spine3d.py --fold 0 --data_dir /data --mixed_precision --xla
FROM tensorflow/tensorflow:2.21.0-gpu

ENV PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2
WORKDIR /opt/scn_tf
COPY pyproject.toml setup.py README.md LICENSE ./
COPY scn_tf ./scn_tf
COPY data_splits ./data_splits
RUN pip install --no-cache-dir -e .
COPY experiments ./experiments
COPY benchmarks ./benchmarks

CMD ["python", "experiments/spine3d.py", "--describe"]

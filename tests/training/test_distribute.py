"""Strategies: choice by name, the errors around them, and real runs on two replicas: mirrored
over two logical CPU devices, and two local worker processes under one TF_CONFIG cluster."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap

import pytest
import synth
from synth import make_learnable_cifar10

from cifarkit.errors import UsageError
from cifarkit.metadata.tf_config import parse_tf_config
from cifarkit.runtime.strategy import Placement, is_chief_task, make_strategy, read_tf_config
from cifarkit.training.rundir import read_history

# Splits the CPU into two logical devices before TensorFlow starts, then runs the CLI.
TWO_CPUS = textwrap.dedent("""
    import sys
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from cifarkit.cli import main
    sys.argv = ["cifarkit", *sys.argv[1:]]
    main()
""")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_learnable_cifar10(tmp_path_factory.mktemp("dist-data"), per_batch=40, test=40)


_train_command = synth.lenet5_train_args


def test_auto_and_one_device_use_a_single_replica_on_a_cpu():
    auto = make_strategy("auto")
    assert (auto.name, auto.replicas, auto.is_chief) == ("default", 1, True)
    one = make_strategy("one-device")
    assert one.name == "one-device" and one.replicas == 1 and "CPU" in one.devices[0]


def test_unknown_strategy_names_the_value():
    with pytest.raises(UsageError, match="strategy='tpu'"):
        make_strategy("tpu")


def test_multi_worker_without_tf_config_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(UsageError, match=r"needs \$TF_CONFIG"):
        make_strategy("multi-worker")


@pytest.mark.parametrize(
    "value, message",
    [
        ("not json", "not a valid cluster description"),
        (json.dumps({"cluster": {"worker": ["a:1"]}}), "not a valid cluster description"),
        (json.dumps({"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 3}}), "index=3"),
        (
            json.dumps(
                {"cluster": {"worker": ["a:1"], "evaluator": ["b:1"]}, "task": {"type": "evaluator", "index": 0}}
            ),
            "type='evaluator'",
        ),
    ],
)
def test_bad_tf_config_names_the_problem(monkeypatch, value, message):
    monkeypatch.setenv("TF_CONFIG", value)
    with pytest.raises(UsageError, match=message):
        read_tf_config()


def test_the_chief_is_the_chief_task_or_else_worker_zero():
    def task(cluster: dict, kind: str, index: int):
        return parse_tf_config(json.dumps({"cluster": cluster, "task": {"type": kind, "index": index}}))

    workers = {"worker": ["a:1", "b:1"]}
    assert is_chief_task(task(workers, "worker", 0))
    assert not is_chief_task(task(workers, "worker", 1))
    with_chief = {**workers, "chief": ["c:1"]}
    assert is_chief_task(task(with_chief, "chief", 0))
    assert not is_chief_task(task(with_chief, "worker", 0))


def test_the_global_batch_must_split_evenly_across_replicas():
    placement = Placement(strategy=None, name="mirrored", replicas=2, devices=("a", "b"))
    assert placement.check_batch(128) == 64
    with pytest.raises(UsageError, match="batch_size=15"):
        placement.check_batch(15)


def test_mirrored_trains_on_two_logical_cpu_devices(data, tmp_path):
    workdir = tmp_path / "mirrored"
    run = subprocess.run(
        [sys.executable, "-c", TWO_CPUS, *_train_command(data, workdir, "--strategy", "mirrored", "--jit")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    report = json.loads((workdir / "report.json").read_text())
    assert report["strategy"]["name"] == "mirrored" and report["strategy"]["replicas"] == 2
    assert [d.rsplit(":", 2)[-2:] for d in report["strategy"]["devices"]] == [["CPU", "0"], ["CPU", "1"]]
    # XLA cannot place variables on several CPU devices: asked for, not used, and the report says so.
    assert report["config"]["jit"] is True and report["runtime"]["jit"] is False
    history = read_history(workdir / "history.csv")
    assert [row["epoch"] for row in history] == [1, 2] and history[1]["loss"] < history[0]["loss"]
    assert 0 <= report["test"]["accuracy"] <= 1


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_two_local_workers_train_together_and_the_chief_writes_the_run(data, tmp_path):
    workdir = tmp_path / "multi"
    cluster = {"worker": [f"127.0.0.1:{port}" for port in _free_ports(2)]}
    command = [sys.executable, "-m", "cifarkit", *_train_command(data, workdir, "--strategy", "multi-worker")]
    jobs = []
    for index in range(2):
        env = {**os.environ, "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})}
        jobs.append(subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = []
    try:
        for job in jobs:
            outputs.append(job.communicate(timeout=300))
    finally:
        for job in jobs:
            if job.poll() is None:
                job.kill()
    for job, (_, stderr) in zip(jobs, outputs):
        assert job.returncode == 0, stderr
    assert "Trained lenet5 for 2 epochs" in outputs[0][0]
    assert "worker finished; the chief wrote the run folder" in outputs[1][0]

    report = json.loads((workdir / "report.json").read_text())
    assert report["strategy"]["name"] == "multi-worker" and report["strategy"]["replicas"] == 2
    assert report["strategy"]["devices"] == ["worker:0"]
    assert report["runtime"]["steps_per_execution"] == 1  # one step per call under multi-worker
    history = read_history(workdir / "history.csv")
    assert [row["epoch"] for row in history] == [1, 2] and history[1]["loss"] < history[0]["loss"]
    for name in ("last.keras", "curves.png", "config.json", "stats.json"):
        assert (workdir / name).is_file(), name
    # The other worker's backup is gone, and nothing of its scratch output landed in the run folder.
    assert sorted(p.name for p in workdir.iterdir()) == sorted(
        [
            "last.keras",
            "history.csv",
            "curves.png",
            "config.json",
            "report.json",
            "stats.json",
            "logs",
            ".cifarkit.lock",
        ]
    )  # the chief's lock on the run folder (empty once released)


def test_each_worker_of_a_multi_worker_run_reads_its_own_shard_files(cifar10_tar, tmp_path):
    """Two workers of two replicas each on a TFRecord export of three shards a split: the trainer's
    pipelines, sharded as tf.distribute shards them for each worker (its InputContext, one input
    pipeline per worker), give worker 0 the images of shards 0 and 2 and worker 1 those of shard 1."""
    from types import SimpleNamespace

    import numpy as np
    import tensorflow as tf
    from tensorflow.python.distribute import input_ops

    from cifarkit.data import open_data
    from cifarkit.formats.export import ExportOptions, export_dataset
    from cifarkit.sources import open_source
    from cifarkit.training.inputs import run_inputs

    export_dataset(
        open_source(cifar10_tar.path),
        tmp_path / "tfr",
        ExportOptions(format="tfrecord", workers=1, shards=3, quiet=True),
    )
    source = open_data(tmp_path / "tfr")
    config = SimpleNamespace(recipe=None, seed=0, augment_on="device", batch_size=2, val_split="test")
    data = SimpleNamespace(source=source, image_size=None)
    for split, which in (("train", "train"), ("test", "validation")):
        truth = {image.tobytes(): index for index, image in enumerate(cifar10_tar.splits[split].images)}
        lengths = source.shard_lengths[split]
        assert len(source.files[split]) == len(lengths) == 3
        starts = np.cumsum([0, *lengths])
        in_shards = [set(range(starts[k], starts[k + 1])) for k in range(3)]
        for worker, shards in ((0, (0, 2)), (1, (1,))):
            placement = Placement(None, "multi-worker", 4, (f"worker:{worker}",), workers=2, worker_index=worker)
            dataset = getattr(run_inputs(config, data, None, placement, steps=1, initial_epoch=0), which)
            context = tf.distribute.InputContext(
                num_input_pipelines=2, input_pipeline_id=worker, num_replicas_in_sync=4
            )
            sharded = input_ops.auto_shard_dataset(
                dataset, context.num_input_pipelines, context.input_pipeline_id, context.num_replicas_in_sync
            )
            read = [truth[image.tobytes()] for images, _ in sharded.as_numpy_iterator() for image in images]
            assert len(read) == len(set(read))  # every image once
            assert set(read) == set().union(*(in_shards[k] for k in shards)), (split, worker)


def test_cluster_processes_are_numbered_chief_first_and_coordinated_by_process_zero():
    """How a $TF_CONFIG cluster becomes JAX processes (and TensorFlow's input pipelines): the
    chief is process 0 and its address coordinates; without a chief, worker 0 is."""
    from cifarkit.runtime.jax_parallel import cluster_process

    def process(cluster: dict, kind: str, index: int):
        return cluster_process(
            parse_tf_config(json.dumps({"cluster": cluster, "task": {"type": kind, "index": index}}))
        )

    workers = {"worker": ["a:1", "b:1", "c:1"]}
    assert [process(workers, "worker", i) for i in range(3)] == [("a:1", 3, 0), ("a:1", 3, 1), ("a:1", 3, 2)]
    with_chief = {**workers, "chief": ["z:1"]}
    assert process(with_chief, "chief", 0) == ("z:1", 4, 0)
    assert [process(with_chief, "worker", i)[2] for i in range(3)] == [1, 2, 3]

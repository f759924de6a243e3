import math
import resource
import sys

import torch

from simseg.training.metrics import classification_metrics
from simseg.training.stage_steps import init_name, training_cost


def test_images_per_second_counts_every_epoch_of_every_resume():
    # 100 images in 2 s, then (a resumed epoch) 300 images in 1 s: 400 images in 3 s
    history = [{"seconds": 2.0, "images_per_s": 50.0}, {"seconds": 1.0, "images_per_s": 300.0}]
    cost = training_cost(history, torch.device("cpu"))
    assert cost["train_seconds"] == 3.0 and math.isclose(cost["images_per_s"], 400 / 3)
    # the process's peak resident set on the CPU, in MiB: at least what this process holds now (torch is loaded)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (2**10 if sys.platform == "darwin" else 1)
    assert cost["peak_memory_mib"] >= 100 and math.isclose(cost["peak_memory_mib"], peak_kib / 2**10, rel_tol=0.05)


def test_classification_metrics_match_a_hand_count():
    confusion = torch.tensor([[3, 1, 0], [0, 2, 0], [1, 0, 0]])  # rows target, columns prediction
    metrics = classification_metrics(confusion, ["a", "b", "c"])
    assert math.isclose(metrics["top1"], 5 / 7)
    assert metrics["class_accuracy"] == {"a": 0.75, "b": 1.0, "c": 0.0}
    assert math.isclose(metrics["mean_class_accuracy"], (0.75 + 1.0 + 0.0) / 3)
    assert metrics["confusion"] == confusion.tolist()


def test_init_name_is_scratch_or_the_run_folder():
    assert init_name("scratch") == "scratch" and init_name("/runs/pretrain-45k") == "pretrain-45k"

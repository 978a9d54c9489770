"""Datasets: shapes, splits, subsets and clear errors."""

import jax
import numpy as np
import pytest

from conftest import write_cifar10_dir
from sweep_helpers import write_cifar_grid
from tiltsweep.sweep.commands.cli import main
from tiltsweep.sweep.grid import load_grid
from tiltsweep.sweep.run.worker import with_local_data
from tiltsweep.trainers.engine import flip_and_crop
from tiltsweep.trainers.config import Cifar10Data, DigitsData, SpiralData
from tiltsweep.trainers.data import DatasetError, load_dataset


def test_spiral_shapes_and_a_fresh_validation_draw():
    data = load_dataset(SpiralData(name="spiral", points_per_class=100, classes=3))
    assert data.x_train.shape == (300, 2) and data.x_val.shape == (300, 2)
    assert np.bincount(data.y_train).tolist() == [100, 100, 100]
    assert not np.allclose(data.x_train, data.x_val)  # another seed, same generator
    radius = np.linalg.norm(data.x_train, axis=1)
    np.testing.assert_allclose(radius[:100], np.linspace(0, 1, 100), atol=1e-12)
    again = load_dataset(SpiralData(name="spiral", points_per_class=100, classes=3))
    np.testing.assert_array_equal(data.x_train, again.x_train)


def test_spiral_angles_follow_the_papers_generator():
    data = load_dataset(SpiralData(name="spiral", points_per_class=200, classes=4, noise=0.0, revolutions=2))
    first_of_class = data.x_train[200:201][0]  # class 1 starts at angle 2 pi / 4 with radius 0
    assert np.allclose(first_of_class, 0)
    end = data.x_train[399]  # class 1 ends at angle pi/2 + 2 pi with radius 1
    np.testing.assert_allclose(end, [np.cos(np.pi / 2), np.sin(np.pi / 2)], atol=1e-12)


def test_digits_stratified_split_and_class_subset():
    data = load_dataset(DigitsData(name="digits", val_fraction=0.25))
    assert data.x_train.shape[1] == 64 and data.num_classes == 10
    assert len(data.x_train) + len(data.x_val) == 1797
    train_share = np.bincount(data.y_train) / np.bincount(data.y_train).sum()
    val_share = np.bincount(data.y_val) / np.bincount(data.y_val).sum()
    np.testing.assert_allclose(train_share, val_share, atol=0.01)
    assert 0 <= data.x_train.min() and data.x_train.max() <= 1
    subset = load_dataset(DigitsData(name="digits", classes=[3, 8]))
    assert subset.num_classes == 2 and set(np.unique(subset.y_train)) == {0, 1}


def test_cifar10_subset_like_the_supplementary(cifar_dir):
    data = load_dataset(Cifar10Data(name="cifar10", path=str(cifar_dir), classes=[0, 1, 2], train_size=60))
    assert data.x_train.shape == (60, 32, 32, 3) and data.num_classes == 3
    assert np.bincount(data.y_train).tolist() == [20, 20, 20]
    assert set(np.unique(data.y_val)) == {0, 1, 2}
    assert len(data.x_val) == 12  # the test batch's examples of those classes (4 each of 40)
    np.testing.assert_allclose(data.x_train.mean(axis=(0, 1, 2)), 0, atol=1e-4)
    np.testing.assert_allclose(data.x_train.std(axis=(0, 1, 2)), 1, atol=1e-3)


def test_cifar10_missing_directory_is_a_clear_error(tmp_path):
    with pytest.raises(DatasetError, match="CIFAR-10 directory not found"):
        load_dataset(Cifar10Data(name="cifar10", path=str(tmp_path / "nowhere")))


def test_cifar10_directory_without_batches_names_what_is_missing(tmp_path):
    (tmp_path / "data_batch_1").write_bytes(b"")
    with pytest.raises(DatasetError, match="missing data_batch_2"):
        load_dataset(Cifar10Data(name="cifar10", path=str(tmp_path)))


def test_cifar10_garbage_batch_names_the_file(tmp_path):
    root = write_cifar10_dir(tmp_path / "c", per_batch=10)
    (root / "data_batch_3").write_bytes(b"this is not a pickle")
    with pytest.raises(DatasetError, match="data_batch_3: not a CIFAR-10 python batch"):
        load_dataset(Cifar10Data(name="cifar10", path=str(root)))


def test_cifar10_asking_for_more_than_exists(cifar_dir):
    with pytest.raises(DatasetError, match="asked for 5000 examples"):
        load_dataset(Cifar10Data(name="cifar10", path=str(cifar_dir), classes=[0, 1], train_size=5000))


def test_a_grids_file_uri_is_a_plain_path_and_a_scheme_it_cannot_read_is_refused(tmp_path, cifar_dir, capsys):
    grid = write_cifar_grid(tmp_path, cifar_dir.resolve().as_uri())
    config = with_local_data(load_grid(grid).points[0].config)  # what a worker trains on
    assert config.data.path == str(cifar_dir.resolve())
    assert len(load_dataset(config.data).x_train) == 40
    for path in ("hdfs://namenode/cifar-10-batches-py", "file:/cifar-10-batches-py"):
        write_cifar_grid(tmp_path, path)
        assert main(["run", str(grid), "--out", str(tmp_path / "results")]) == 2
        message = capsys.readouterr().err
        assert message.count("\n") == 1 and f"{grid}: data.path: {path}: " in message, message
    assert not (tmp_path / "results").exists()


def test_flip_and_crop_keeps_shape_moves_pixels_and_is_seeded():
    images = jax.random.normal(jax.random.PRNGKey(0), (8, 32, 32, 3))
    out = flip_and_crop(jax.random.PRNGKey(1), images)
    assert out.shape == images.shape
    assert not np.allclose(out, images)
    np.testing.assert_array_equal(out, flip_and_crop(jax.random.PRNGKey(1), images))
    # Without padding, only flips remain: each image is itself or its mirror.
    flipped = flip_and_crop(jax.random.PRNGKey(2), images, pad=0)
    for original, result in zip(np.asarray(images), np.asarray(flipped)):
        assert np.allclose(result, original) or np.allclose(result, original[:, ::-1])

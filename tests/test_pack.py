"""scn-pack: data and wheel packs for a GPU machine without a package index."""

import hashlib
import importlib.metadata
import json

import pytest

from conftest import write_dataset
from scn_tf.cli import pack
from scn_tf.data.io import read_id_list


def make_data(tmp_path):
    write_dataset(tmp_path / "data", ids=("a", "b", "c"))
    (tmp_path / "data" / "train.txt").write_text("a\nb\n")
    (tmp_path / "mha.json").write_text(json.dumps({"data": {"image_suffix": ".mha", "num_landmarks": 3}}))
    return ["scn-pack", "data", "--data_dir", str(tmp_path / "data"), "--preset", "cpu2d"]


def test_data_pack_is_a_data_dir_with_a_manifest(tmp_path):
    base = make_data(tmp_path) + ["--config", str(tmp_path / "mha.json"), "--ids", "train.txt"]
    assert pack.run([*base, "--output", str(tmp_path / "pack")]) == 0
    out = tmp_path / "pack"
    assert sorted(p.name for p in (out / "images").iterdir()) == ["a.mha", "b.mha"]
    assert read_id_list(out / "train.txt") == ["a", "b"]
    assert (out / "landmarks.csv").read_bytes() == (tmp_path / "data" / "landmarks.csv").read_bytes()
    manifest = json.loads((out / "MANIFEST.json").read_text())
    assert set(manifest["files"]) == {"images/a.mha", "images/b.mha", "train.txt", "landmarks.csv"}
    for name, entry in manifest["files"].items():
        assert entry["sha256"] == hashlib.sha256((out / name).read_bytes()).hexdigest()
    assert manifest["bytes"] == sum(entry["bytes"] for entry in manifest["files"].values())
    # an existing pack is kept without --overwrite; a pack over the limit is not written at all
    assert pack.run([*base, "--output", str(out)]) == 1 and (out / "MANIFEST.json").exists()
    assert pack.run([*base, "--max_mib", "0", "--output", str(tmp_path / "big")]) == 1
    assert not (tmp_path / "big").exists() and not list(tmp_path.glob(".tmp-*"))


def test_data_pack_names_a_missing_image(tmp_path, caplog):
    base = make_data(tmp_path) + ["--config", str(tmp_path / "mha.json")]
    (tmp_path / "data" / "train.txt").write_text("a\nzz\n")
    assert pack.run([*base, "--ids", "train.txt", "--output", str(tmp_path / "pack")]) == 1
    assert "id zz: image" in caplog.text and not (tmp_path / "pack").exists()


def test_wheel_requirements_are_the_installed_versions():
    requirements = pack.wheel_requirements(["extra==1.0"])
    assert requirements[-1] == "extra==1.0"
    assert f"keras=={importlib.metadata.version('keras')}" in requirements
    assert any(r.startswith("SimpleITK==") for r in requirements)


@pytest.mark.slow
def test_wheels_download_for_the_target_python(tmp_path):
    pack.download_wheels(["namex==0.1.0"], "3.12", tmp_path)
    assert [p.name for p in tmp_path.glob("*.whl")] == ["namex-0.1.0-py3-none-any.whl"]

"""The commands' shared command line: --help, quiet TensorFlow, presets via scn-train, id lists, --describe
JSON and the units of reports. In-process where possible; three subprocesses check a fresh stderr."""

import importlib
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from absl import flags

from conftest import load_experiment, write_dataset
from scn_tf.cli import common, runner
from scn_tf.configs import load_config, preset
from scn_tf.data.io import DataError
from scn_tf.listing import shortened

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = ["augment", "train", "predict", "evaluate", "convert"]
SCRIPTS = sorted(path.stem for path in (ROOT / "experiments").glob("*.py"))
WITHOUT_LEVEL = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}  # conftest sets it


def load(name: str):
    """A console command's module, or an experiments/<name>.py script as a module."""
    if name in COMMANDS:
        return importlib.import_module(f"scn_tf.cli.{name}")
    return load_experiment(name)


def cpp_log_lines(stderr: str) -> list[str]:
    """TensorFlow's C++ log lines (absl C++ logging: `I0000 00:00:... port.cc:153] ...`)."""
    return [line for line in stderr.splitlines() if ".cc:" in line or "InitializeLog" in line]


@pytest.mark.parametrize("name", COMMANDS + SCRIPTS)
def test_help_lists_every_flag_and_exits_0(name, capsys):
    module = load(name)
    defined = flags.FlagValues()
    module.define_flags(defined)
    for argument in ("--help", "-h", "--helpfull"):
        assert module.run([name, argument]) == 0
        printed = capsys.readouterr().out
        for flag in defined:
            assert f"  --{flag}: " in printed, flag
        assert printed.startswith(module.__doc__.strip().splitlines()[0])
    assert module.run([name, "--no_such_flag"]) == 1
    assert "no_such_flag" in capsys.readouterr().err


def test_help_and_print_config_in_fresh_processes_print_no_tensorflow_lines():
    for arguments in (["scn_tf.cli.train", "--help"], ["scn_tf.cli.augment", "--preset", "cpu2d", "--print_config"]):
        result = subprocess.run(
            [sys.executable, "-m", *arguments],
            capture_output=True,
            encoding="utf-8",
            errors="replace",
            env=WITHOUT_LEVEL,
        )
        assert result.returncode == 0 and result.stderr == "", result.stderr
    printed = json.loads(result.stdout)["data"]
    assert printed["image_frame"] == "header" and printed["outlier_radii"] == [2, 4, 10]  # numbers, not strings


@pytest.mark.slow
def test_prediction_prints_no_tensorflow_lines(tmp_path):
    from scn_tf.configs import AugmentationConfig, ExperimentConfig, NetworkConfig, TrainingConfig
    from scn_tf.model_dir import write_model_files
    from scn_tf.models import build_model

    data = write_dataset(tmp_path / "data")
    config = ExperimentConfig(
        data,
        AugmentationConfig(),
        NetworkConfig(filters=4, levels=2, spatial_kernel_size=3, spatial_downsampling=4),
        TrainingConfig(),
    )
    model = build_model(config.network, config.data)
    model(np.zeros((1, 32, 32, 1), np.float32))
    write_model_files(tmp_path / "run", config)
    model.save_weights(tmp_path / "run" / "last.weights.h5")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "scn_tf.cli.predict",
            "--model_dir",
            tmp_path / "run",
            "--output",
            tmp_path / "p.csv",
            tmp_path / "data" / "images" / "a.mha",
        ],
        capture_output=True,
        encoding="utf-8",
        errors="replace",
        env=WITHOUT_LEVEL,
    )
    assert result.returncode == 0, result.stderr
    assert cpp_log_lines(result.stderr) == [], result.stderr
    assert "\x1b[" not in result.stdout + result.stderr and "1/1 images, " in result.stdout  # plain progress
    assert json.loads((tmp_path / "p.json").read_text())["method"] == "SCN"


def test_quiet_import_respects_the_users_level_and_restores_stderr(monkeypatch, capfd):
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "1")
    common.import_backend_quietly()
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "1"
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL")
    assert common.import_backend_quietly() == "tensorflow" and "tensorflow" in sys.modules
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "3"
    os.write(2, b"still here\n")
    assert capfd.readouterr().err == "still here\n"


def test_id_lists_are_found_in_data_dir_and_the_error_names_both_places(tmp_path, monkeypatch):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.txt").write_text("a\n")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert runner.find_id_list("train.txt", str(tmp_path / "data")) == tmp_path / "data" / "train.txt"
    with pytest.raises(DataError) as error:
        runner.find_id_list("test.txt", str(tmp_path / "data"))
    assert str(tmp_path / "elsewhere" / "test.txt") in str(error.value)
    assert str(tmp_path / "data" / "test.txt") in str(error.value)


@pytest.mark.slow
def test_scn_train_preset_cpu2d_trains_with_id_lists_from_data_dir(tmp_path, monkeypatch, capsys):
    from scn_tf.cli import train

    write_dataset(tmp_path / "data", ids=("a", "b", "c", "d"))
    (tmp_path / "data" / "train.txt").write_text("a\nb\nc\n")
    (tmp_path / "data" / "test.txt").write_text("d\n")
    overrides = {
        "data": {
            "num_landmarks": 3,
            "image_suffix": ".mha",
            "landmark_units": "mm",
            "intensity_shift": 0.0,
            "intensity_scale": 0.01,
        },
        "network": {"levels": 2, "spatial_kernel_size": 3, "spatial_downsampling": 4},
    }
    (tmp_path / "data.json").write_text(json.dumps(overrides))
    monkeypatch.chdir(tmp_path)
    keras.utils.set_random_seed(0)
    status = train.run(
        [
            "scn-train",
            "--preset",
            "cpu2d",
            "--config",
            "data.json",
            "--data_dir",
            "data",
            "--train_ids",
            "train.txt",
            "--test_ids",
            "test.txt",
            "--iterations",
            "3",
            "--filters",
            "4",
            "--image_size",
            "32,32",
            "--workers",
            "1",
            "--output_dir",
            "run",
        ]
    )
    assert status == 0
    config = load_config(tmp_path / "run" / "config.json")
    assert (config.data.name, config.data.image_frame, config.training.optimizer) == ("cpu2d", "header", "adam")
    assert config.network.spatial_kernel_size == 3 and config.data.image_size == [32, 32]
    assert "PE median (mm)" in (tmp_path / "run" / "summary.txt").read_text()
    assert not (tmp_path / "run" / ".lock").exists()  # the lock ends with the run
    capsys.readouterr()


def test_describe_prints_json_that_reads_back_as_a_configuration(tmp_path, capsys):
    from scn_tf.cli import train

    assert train.run(["scn-train", "--preset", "cpu2d", "--describe"]) == 0
    output = capsys.readouterr().out
    described = json.loads(output)
    assert described["trainable_weights"] > 0 and described["data"]["name"] == "cpu2d"
    path = tmp_path / "described.json"
    path.write_text(output)
    assert load_config(path).to_dict() == preset("cpu2d").to_dict()
    assert train.run(["scn-train", "--config", str(path), "--describe"]) == 0
    assert json.loads(capsys.readouterr().out) == described


@pytest.mark.parametrize("name", ["cpu2d", "cpu3d"])
def test_cpu_presets_use_the_header_frame(name):
    config = preset(name)
    assert config.data.image_frame == "header" and config.data.ndim == int(name[3])
    assert config.training.optimizer == "adam" and config.training.iterations <= 2000


def write_pixel_predictions(folder: Path, method: str | None = "U-Net") -> tuple[Path, Path]:
    """Predictions 3 px (a 3-4-5 triangle: 5 px) off the truth for two images of two landmarks."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "truth.csv").write_text("a,10,10,20,20\nb,30,30,40,40\n")
    (folder / "pred.csv").write_text("a,13,14,20,20\nb,30,30,43,44\n")
    sidecar = {"landmark_units": "pixel", "ndim": 2, "landmark_names": ["tip", "base"]}
    (folder / "pred.json").write_text(json.dumps({**sidecar, "method": method} if method else sidecar))
    return folder / "pred.csv", folder / "truth.csv"


def test_evaluate_reports_pixels_with_method_and_landmark_names(tmp_path, capsys):
    from scn_tf.cli import evaluate

    predictions, truth = write_pixel_predictions(tmp_path)
    assert (
        evaluate.run(
            [
                "scn-evaluate",
                "--predictions",
                str(predictions),
                "--ground_truth",
                str(truth),
                "--output_dir",
                str(tmp_path / "report"),
                "--radii",
                "4,6",
            ]
        )
        == 0
    )
    summary = (tmp_path / "report" / "summary.txt").read_text()
    assert "| U-Net | 2.50 | 2.50 +- 2.50 | 2 (50.00%) | 0 (0.00%) |" in summary
    assert "PE median (px)" in summary and "#O >= 4 px" in summary and "within 6 px" in summary
    rows = (tmp_path / "report" / "per_landmark.csv").read_text().splitlines()
    assert rows[0].startswith("landmark,name,count,mean_px") and rows[1].startswith("0,tip,2,2.5000")
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert (metrics["units"], metrics["method"]) == ("px", "U-Net")
    assert (
        evaluate.run(
            [
                "scn-evaluate",
                "--predictions",
                str(predictions),
                "--ground_truth",
                str(truth),
                "--output_dir",
                str(tmp_path / "named"),
                "--method",
                "mine",
                "--normalization",
                "wrist:0,1,50",
            ]
        )
        == 0
    )
    assert "| mine |" in capsys.readouterr().out
    assert "PE median (mm)" in (tmp_path / "named" / "summary.txt").read_text()


def test_cut_lists_say_how_many_more():
    assert shortened(["a", "b"]) == "a, b" and shortened([]) == ""
    assert shortened(range(12)) == "0, 1, 2, 3, 4, 5, 6, 7, 8, 9, ... (2 more)"
    assert shortened("abcdef", 5) == "a, b, c, d, e, ... (1 more)"


def test_evaluate_says_how_many_unmatched_ids_it_did_not_list(tmp_path, caplog):
    from scn_tf.cli import evaluate

    (tmp_path / "truth.csv").write_text("".join(f"t{k:02d},1,1,2,2\n" for k in range(22)))
    (tmp_path / "pred.csv").write_text("".join(f"p{k:02d},1,1,2,2\n" for k in range(22)))
    arguments = ["--predictions", str(tmp_path / "pred.csv"), "--ground_truth", str(tmp_path / "truth.csv")]
    assert evaluate.run(["scn-evaluate", *arguments, "--output_dir", str(tmp_path / "report")]) == 1
    assert "only in" in caplog.text and caplog.text.count("p09, ... (12 more)") == 1
    assert caplog.text.count("t09, ... (12 more)") == 1 and "p10" not in caplog.text


@pytest.fixture
def backend_refused(monkeypatch):
    """Loading the backend fails the test: the inputs must be checked before it (TensorFlow takes seconds)."""

    def refuse(config=None):
        raise AssertionError("the backend was loaded before the inputs were checked")

    from scn_tf.cli import augment

    monkeypatch.setattr(common, "import_backend_quietly", refuse)
    monkeypatch.setattr(augment, "import_backend_quietly", refuse)
    components = load("skull2d_components")
    monkeypatch.setattr(components, "import_backend_quietly", refuse)
    return components


MISSPELT_INPUTS = [
    ("train", ["--config", "my.jsn"], "my.jsn: cannot read configuration"),
    ("train", ["--preset", "cpu2d", "--train_ids", "train.txt"], "--data_dir is required"),
    ("train", ["--preset", "cpu2d", "--data_dir", "dta", "--train_ids", "train.txt"], "--data_dir dta: folder does"),
    ("train", ["--preset", "cpu2d", "--data_dir", "data", "--train_ids", "trian.txt"], "id list trian.txt not found"),
    (
        "train",
        ["--preset", "cpu2d", "--data_dir", "data", "--train_ids", "train.txt", "--test_ids", "tset.txt"],
        "id list tset.txt not found",
    ),
    ("hand2d", ["--data_dir", "dta"], "--data_dir dta: folder does not exist"),
    ("augment", ["--config", "my.jsn", "--data_dir", "data", "--ids", "a", "--output_dir", "o"], "my.jsn: cannot"),
    ("augment", ["--preset", "cpu2d", "--data_dir", "dta", "--ids", "a", "--output_dir", "o"], "--data_dir dta:"),
    ("augment", ["--preset", "cpu2d", "--data_dir", "data", "--ids", "a/b", "--output_dir", "o"], "path separator"),
    (
        "evaluate",
        ["--predictions", "data/l.csv", "--ground_truth", "data/l.csv", "--output_dir", "o", "--ids", "ids.tx"],
        "ids.tx: id list does not exist",
    ),
    ("skull2d_components", ["--run_dir", "norun", "--data_dir", "data"], "norun: model directory does not exist"),
    ("skull2d_components", ["--run_dir", "run", "--data_dir", "dta"], "--data_dir dta: folder does not exist"),
    ("skull2d_components", ["--run_dir", "run", "--data_dir", "data", "--test_ids", "t.tx"], "t.tx: id list does"),
]


@pytest.mark.parametrize("name, arguments, message", MISSPELT_INPUTS)
def test_misspelt_inputs_are_reported_before_the_backend_loads(
    name, arguments, message, tmp_path, monkeypatch, capsys, caplog, backend_refused
):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.txt").write_text("a\n")
    (tmp_path / "data" / "l.csv").write_text("a,1,1,2,2\n")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text(preset("skull2d_cpu").to_json())
    monkeypatch.chdir(tmp_path)
    module = backend_refused if name == "skull2d_components" else load(name)
    assert module.run([name, *arguments]) == 1
    assert message in caplog.text + capsys.readouterr().err


def test_a_misspelt_id_list_is_reported_at_once_without_tensorflow(tmp_path):
    (tmp_path / "data").mkdir()
    code = (
        "import sys, time\nfrom scn_tf.cli import train\nstart = time.monotonic()\n"
        "status = train.run(['scn-train', '--preset', 'cpu2d', '--data_dir', 'data', '--train_ids', 'trian.txt'])\n"
        "print(status, 'tensorflow' in sys.modules, time.monotonic() - start)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, encoding="utf-8", env=WITHOUT_LEVEL
    )
    status, loaded, seconds = result.stdout.split()
    assert (status, loaded) == ("1", "False") and float(seconds) < 0.5, result.stdout
    assert "id list trian.txt not found" in result.stderr

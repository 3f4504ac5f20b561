"""Progress where stdout is not a terminal: plain occasional lines, no colour codes or carriage returns."""

import io
import sys

import keras

from scn_tf.progress import PlainProgress, progress_bar


def test_plain_progress_writes_a_line_per_interval_and_the_last():
    stream = io.StringIO()
    progress = PlainProgress(100, interval=3600, stream=stream)
    for step in range(0, 101, 10):
        progress.update(step, [("loss", 2.5), ("sigma_mean", 0.000125)])
    progress.update(100)  # finished already: no second final line
    (line,) = stream.getvalue().splitlines()
    assert line.startswith("100/100 steps, ") and " s/step - loss: 2.5 - sigma_mean: 0.000125" in line
    stream = io.StringIO()
    progress = PlainProgress(3, "image", interval=0, stream=stream)
    for _ in range(3):
        progress.add(1)
    assert [line.split(",")[0] for line in stream.getvalue().splitlines()] == ["1/3 images", "2/3 images", "3/3 images"]
    assert "\x1b" not in stream.getvalue() and "\r" not in stream.getvalue()


def test_silent_progress_writes_nothing():
    stream = io.StringIO()
    progress = PlainProgress(2, verbose=False, interval=0, stream=stream)
    progress.add(1)
    progress.add(1)
    assert stream.getvalue() == ""


def test_progress_bar_is_keras_bar_only_on_a_terminal(monkeypatch, capsys):
    assert isinstance(progress_bar(5), PlainProgress)
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    bar = progress_bar(5, "image")
    assert isinstance(bar, keras.utils.Progbar) and bar.unit_name == "image"
    bar.update(1, [("loss", 2.0)])
    bar.update(5, [("loss", 4.0)])  # the last update, always drawn
    assert "loss: 4.0000" in capsys.readouterr().out  # shown as given, not averaged (3.6)
    assert isinstance(progress_bar(5, verbose=False), PlainProgress)

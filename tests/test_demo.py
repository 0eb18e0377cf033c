"""The README's main command, in its smallest configuration."""

from scoresde.__main__ import main


def test_demo_writes_figures_gif_and_prints_the_metric_table(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--num", "200", "--steps", "50"]) == 0
    for name in ["samplers.png", "loss.png", "score.png", "paths.png", "reverse.gif"]:
        assert (tmp_path / name).stat().st_size > 1000, name
    out = capsys.readouterr().out
    assert "energy dist" in out and "Predictor-corrector" in out and "floor" in out

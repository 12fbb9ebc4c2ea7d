"""The main job's command line: options in any order, the output folder positional or as --out."""

from pathlib import Path

import pytest

from demo.run_demo import REPO, parse_args


@pytest.mark.parametrize(
    "argv,out,seeds",
    [
        (["--seeds", "8"], REPO / "out" / "demo", 8),  # the README's example, no folder
        (["/tmp/d", "--seeds", "8"], Path("/tmp/d"), 8),
        (["--seeds", "8", "/tmp/d"], Path("/tmp/d"), 8),
        (["--out", "/tmp/d", "--seeds", "3"], Path("/tmp/d"), 3),
        (["--seeds", "3", "--out", "/tmp/d", "--fresh"], Path("/tmp/d"), 3),
        ([], REPO / "out" / "demo", 100),
    ],
)
def test_options_in_any_order(argv, out, seeds):
    args = parse_args(argv)
    assert (args.out, args.seeds) == (out, seeds)
    assert args.fresh == ("--fresh" in argv)


def test_two_different_folders_are_refused(capsys):
    with pytest.raises(SystemExit):
        parse_args(["/tmp/a", "--out", "/tmp/b"])
    assert "two output folders" in capsys.readouterr().err

"""End-to-end text-to-image: ``genflow tokenizer train``, the debug text preset trained through the
CLI, sampling odd prompts, the prompt metrics in ``genflow eval``, and one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tomllib

from genflow.cli import main
from genflow.text.tokenizer import sha256_file

#: The module's run (tokenizer training, a store, 4 steps, final samples) takes about 20 s on 2 cores.
pytestmark = pytest.mark.slow


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def text_run(tmp_path_factory):
    """The debug text preset (tim-dit with cross-attention), trained for 4 steps through the CLI."""
    run = tmp_path_factory.mktemp("text") / "run"
    code = main(["train", "--config", "debug-text", "--run-dir", str(run), "--no-progress"])
    assert code == 0
    return run


def test_the_run_records_its_tokenizer(text_run):
    config = tomllib.loads((text_run / "config.toml").read_text())
    encoder = config["text_encoder"]
    assert encoder["name"] == "transformer" and encoder["tokenizer"].endswith(".model")
    assert encoder["tokenizer_sha256"] == sha256_file(__import__("pathlib").Path(encoder["tokenizer"]))
    rows = [json.loads(line) for line in (text_run / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == 4 and np.isfinite(rows[-1]["loss"])


def test_any_prompt_samples(capsys, text_run, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red circle\n\nzebra quantum flux\n\u4e09\u4e2a\u7ea2\u8272\u7684\u5706 \U0001F7E5\n"
                       + "two blue squares above a yellow star " * 300 + "\n", encoding="utf-8")
    out = tmp_path / "s"
    with pytest.warns(UserWarning, match="truncated"):
        code, stdout, err = run_cli(capsys, "sample", str(text_run), "--prompt", "", "--prompt", "x" * 10_000,
                                    "--prompts", str(prompts), "--steps", "1,2", "--num", "2", "--out", str(out))
    assert code == 0, err
    x = np.load(out / "samples_2steps.npy")
    assert x.shape == (14, 3, 16, 16) and np.isfinite(x).all()
    lines = (out / "prompts.txt").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 14 and lines[0] == "" and lines[4] == "a red circle"
    assert (out / "samples.png").is_file()


def test_eval_scores_prompts_per_step_count(capsys, text_run, tmp_path):
    code, out, err = run_cli(capsys, "eval", str(text_run), "--steps", "1,2", "--num", "8", "--no-progress",
                             "--metrics", "prompt_colour,prompt_count,prompt_single_shape", "--out", str(tmp_path))
    assert code == 0, err
    document = json.loads((tmp_path / "eval.json").read_text())
    assert "prompt_colour" in out and document


def test_tokenizer_train_command(capsys, text_run, tmp_path):
    from genflow.components.build import cache_dir

    stores = sorted(cache_dir().glob("shapes-*.zarr"))
    out = tmp_path / "tok.model"
    code, stdout, err = run_cli(capsys, "tokenizer", "train", "--data", str(stores[0]), "--vocab-size", "400",
                                "--out", str(out))
    assert code == 0, err and out.is_file()
    assert "sha256" in stdout
    model = out.read_bytes()
    code, _, err = run_cli(capsys, "tokenizer", "train", "--data", str(stores[0]), "--vocab-size", "300",
                           "--out", str(out))
    assert code == 2 and "exists; pass --overwrite" in err and out.read_bytes() == model
    code, _, err = run_cli(capsys, "tokenizer", "train", "--data", str(stores[0]), "--vocab-size", "300",
                           "--out", str(out), "--overwrite")
    assert code == 0, err


@pytest.mark.parametrize(("argv", "message"), [
    (["tokenizer", "train", "--data", "/nonexistent.zarr", "--out", "x.model"], "no genflow store"),
    (["tokenizer"], "expected an action: train"),
])
def test_tokenizer_errors(capsys, argv, message):
    code, _, err = run_cli(capsys, *argv)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_bad_text_inputs(capsys, text_run, tmp_path):
    # A tokenizer that does not exist.
    code, _, err = run_cli(capsys, "train", "--config", "debug-text", "--run-dir", str(tmp_path / "a"),
                           "--no-progress", 'text_encoder.tokenizer="/nonexistent/tok.model"')
    assert code == 2 and "does not exist" in err
    # Text conditioning on a store without captions.
    store = tmp_path / "toy.zarr"
    assert main(["prepare", "--dataset", "toy2d", "--count", "64", "--out", str(store), "--no-progress"]) == 0
    capsys.readouterr()
    code, _, err = run_cli(capsys, "train", "--data", str(store), "--run-dir", str(tmp_path / "b"), "--no-progress",
                           "data.condition=\"text\"", "train.steps=1")
    assert code == 2 and "has no captions" in err
    code, _, err = run_cli(capsys, "tokenizer", "train", "--data", str(store), "--out", str(tmp_path / "t.model"))
    assert code == 2 and "has no captions" in err
    # Prompts for a class-conditional run, a class for a text run, an unreadable prompt file.
    code, _, err = run_cli(capsys, "sample", str(text_run), "--class", "1")
    assert code == 2 and "text-conditioned" in err
    code, _, err = run_cli(capsys, "sample", str(text_run), "--prompts", str(tmp_path / "missing.txt"))
    assert code == 2 and "--prompts" in err


def test_a_replaced_tokenizer_is_refused(capsys, text_run, tmp_path):
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(text_run, copy)
    config = (copy / "config.toml").read_text()
    fake = tmp_path / "other.model"
    fake.write_bytes(b"junk")
    path = tomllib.loads(config)["text_encoder"]["tokenizer"]
    (copy / "config.toml").write_text(config.replace(path, str(fake)))
    code, _, err = run_cli(capsys, "sample", str(copy), "--prompt", "a red circle", "--steps", "1")
    assert code == 2 and "replaced" in err

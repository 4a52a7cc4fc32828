"""The command line as a user meets it: help with choices, defaults and units for every flag;
mistakes reported before any work, as one line on stderr, exit status 2, nothing written."""
import re

import pytest

from wsprior import cli
from wsprior.data.samples import sample_dir
from wsprior.settings import DeblurDehazeSettings, IdtSettings, TieSettings

TASKS = {"deblur-dehaze": DeblurDehazeSettings, "tie": TieSettings, "idt": IdtSettings}


def help_text(capsys, *argv) -> str:
    with pytest.raises(SystemExit) as exit_:
        cli.main([*argv, "--help"])
    assert exit_.value.code == 0
    return capsys.readouterr().out


def option_help(text: str) -> dict[str, str]:
    """``{"--flag": its help}`` from argparse's help output (help lines joined)."""
    entries, current = {}, None
    for line in text.splitlines():
        match = re.match(r"^  (-\w, )?(--[\w-]+)(.*)$", line)
        if match:
            current = match.group(2)
            entries[current] = match.group(3)
        elif current and line.startswith(" " * 10):
            entries[current] += " " + line.strip()
        else:
            current = None
    return {flag: " ".join(help.split()) for flag, help in entries.items()}


def test_top_level_help_reads_as_prose_with_examples(capsys):
    text = help_text(capsys)
    assert "``" not in text and "generated" not in text
    for command in ("deblur-dehaze", "tie", "idt", "demo", "train", "sample"):
        assert command in text
    assert "examples:" in text and "wsprior demo -o demo_output" in text


@pytest.mark.parametrize("task", TASKS)
def test_every_flag_has_help_with_a_default_or_says_it_is_required(capsys, task):
    entries = option_help(help_text(capsys, task))
    flags = {"--" + name.replace("_", "-") for name in TASKS[task].model_fields}
    assert flags <= set(entries), flags - set(entries)
    for flag in flags:
        text = entries[flag]
        assert text, f"{flag} has no help"
        assert "``" not in text
        if TASKS[task].model_fields[flag[2:].replace("-", "_")].annotation is not bool:
            assert "default" in text or "required" in text, f"{flag}: {text}"


@pytest.mark.parametrize("task", TASKS)
def test_method_lists_its_choices_and_default_and_what_ws_costs(capsys, task):
    entries = option_help(help_text(capsys, task))
    method = entries["--method"]
    for name in TASKS[task].model_fields["method"].annotation.__args__:
        assert name in method
    assert "(default: ws)" in method and "s per 512² plane" in method and "CPU" in method


def test_named_flags_explain_themselves_with_units(capsys):
    tie, idt = (option_help(help_text(capsys, task)) for task in ("tie", "idt"))
    assert "default: 5 steps per sample for ws, 12" in tie["--steps"] and "None" not in tie["--steps"]
    assert "default: 6 steps per sample for ws, 12" in idt["--steps"]
    assert "default: 2 samples for ws, 4" in tie["--n-samples"]
    assert "shipped" in tie["--prior"] and ".safetensors" in tie["--prior"]
    assert "standard deviation" in tie["--return-std"]
    assert "same seed" in tie["--seed"]
    assert "cuda" in tie["--device"] and "default: auto" in tie["--device"]
    assert "refractive index" in idt["--n-medium"]
    assert "ri" in idt["--components"] and "permittivity" in idt["--components"]
    assert "{ri,permittivity}" in help_text(capsys, "idt")
    assert "µm" in idt["--slice-thickness-um"] and "default" in idt["--slice-thickness-um"]
    for flag in ("--z-um", "--wavelength-um", "--pixel-size-um"):
        assert "µm" in tie[flag], flag


def test_train_and_sample_show_their_defaults(capsys):
    train = option_help(help_text(capsys, "train"))
    assert "default: 2000" in train["--steps"] and "default: ws" in train["--kind"]
    sample = option_help(help_text(capsys, "sample"))
    assert "default: 16" in sample["--count"]


def tie_args(tmp_path, *extra):
    return ["tie", str(sample_dir() / "tie.tif"), "-o", str(tmp_path / "out" / "phase.tif"),
            "--config", str(sample_dir() / "tie.yaml"), *extra]


def assert_one_line_error(capsys, code, *words):
    assert code == 2
    err = capsys.readouterr().err
    lines = [line for line in re.split(r"[\r\n]", err) if line.strip()]
    errors = [line for line in lines if "wsprior: error:" in line]
    assert len(errors) == 1 and errors[0].startswith("wsprior: error:"), err
    assert "%|" not in err and "Traceback" not in err, err  # checked before any work
    for word in words:
        assert word in errors[0], errors[0]


@pytest.mark.parametrize("extra, words", [
    (("--method", "ws", "--prior", "missing.safetensors"), ("--prior", "does not exist")),
    (("--method", "tikhonov", "--z-um", "-2", "2"), ("2 defocus values", "one plane per")),
    (("--method", "tikhonov", "--wavelength-um", "530"), ("wavelength_um",)),
])
def test_mistakes_are_one_line_before_any_work(tmp_path, capsys, extra, words):
    assert_one_line_error(capsys, cli.main(tie_args(tmp_path, *extra)), *words)
    assert not (tmp_path / "out").exists()


def test_cuda_without_a_gpu_is_reported_before_the_run(tmp_path, capsys, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code = cli.main(tie_args(tmp_path, "--method", "tikhonov", "--device", "cuda"))
    assert_one_line_error(capsys, code, "--device cuda", "no CUDA GPU")
    assert not (tmp_path / "out").exists()


def test_an_output_folder_that_cannot_be_written_is_reported_before_the_run(tmp_path, capsys,
                                                                          monkeypatch):
    (tmp_path / "a_file").write_text("not a folder")
    argv = tie_args(tmp_path, "--method", "tikhonov")
    argv[argv.index("-o") + 1] = str(tmp_path / "a_file" / "phase.tif")
    called = []
    monkeypatch.setattr(cli.api, "tie_phase", lambda *a, **k: called.append(1))
    assert_one_line_error(capsys, cli.main(argv), "--output", "not a folder")
    assert called == []  # reported before the reconstruction, not after it

    read_only = tmp_path / "read_only"
    read_only.mkdir()
    monkeypatch.setattr(cli.io.os, "access", lambda path, mode: False)  # as for a non-root user
    argv[argv.index("-o") + 1] = str(read_only / "phase.tif")
    assert_one_line_error(capsys, cli.main(argv), "--output", "not writable")
    assert called == [] and list(read_only.iterdir()) == []


def test_an_error_during_the_run_starts_on_its_own_line(tmp_path, capsys, monkeypatch):
    def failing(data, progress=None, **params):
        if progress is not None:   # None: the expected-duration run on a crop, which fails too
            progress(0, 4)
            progress(1, 4)
        raise ValueError("the sampler diverged")

    monkeypatch.setattr(cli.api, "tie_phase", failing)
    monkeypatch.setitem(cli._TASKS, "tie", (failing, *cli._TASKS["tie"][1:]))
    code = cli.main(tie_args(tmp_path, "--method", "tikhonov"))
    assert code == 2
    err = capsys.readouterr().err
    assert "\nwsprior: error: the sampler diverged" in err, repr(err)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("argv, words", [
    (("sample", "--prior", "missing.safetensors"), ("--prior", "does not exist")),
    (("sample", "--device", "cuda"), ("--device cuda", "no CUDA GPU")),
    (("train", "--init-from", "missing.safetensors", "--steps", "2"),
     ("--init-from", "does not exist")),
    (("train", "--device", "cuda", "--steps", "2"), ("--device cuda", "no CUDA GPU")),
])
def test_train_and_sample_mistakes_are_one_line_before_any_work(tmp_path, capsys, monkeypatch,
                                                                argv, words):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    output = tmp_path / "out" / ("grid.png" if argv[0] == "sample" else "prior.safetensors")
    assert_one_line_error(capsys, cli.main([argv[0], "-o", str(output), *argv[1:]]), *words)
    assert not (tmp_path / "out").exists()


def test_demo_and_sample_describe_themselves(capsys):
    assert "demo.png" in help_text(capsys, "demo").split("options:")[0]
    assert "PNG grid" in help_text(capsys, "sample").split("options:")[0]

"""`prunekit analyze` and `prunekit prune` end to end, in-process."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import zoo
import prunekit as pk
from prunekit.cli import main


def test_analyze_table_shows_nesting(capsys) -> None:
    assert main(["analyze", "zoo:RCAN", "--input-shape", "1,3,8,8"]) == 0
    out = capsys.readouterr().out
    assert "6 units (4 removable blocks)" in out
    lines = {line.strip().split()[0]: line for line in out.splitlines() if line.strip().startswith("body.")}
    assert lines["body.0.body.1"].startswith("  body.0.body.1")  # indented under its group
    assert lines["body.0"].startswith("body.0")
    assert "3,004" in lines["body.0"]


def test_analyze_json(capsys) -> None:
    assert main(["analyze", "zoo:SRNetStack", "-m", "nb=3", "--input-shape", "1,3,8,8", "--json"]) == 0
    graph = pk.Graph.model_validate_json(capsys.readouterr().out)
    assert [u.params for u in graph.leaves()] == [73_856] * 3
    assert graph.unit("resblocks").container


def test_analyze_bad_input_shape_exits_2(capsys) -> None:
    assert main(["analyze", "zoo:EDSR", "--input-shape", "1,5,8,8"]) == 2
    assert "[1, 5, 8, 8]" in capsys.readouterr().err


def test_analyze_needs_shapes_without_registered_inputs(capsys) -> None:
    assert main(["analyze", "zoo:EDSR"]) == 2
    assert "--input-shape" in capsys.readouterr().err


def write_config(path, **overrides) -> str:
    cfg = {
        "model": "zoo:SRNetStack",
        "model_kwargs": {"nf": 16, "nb": 6},
        "input_shapes": [[1, 3, 8, 8]],
        "strategy": "magnitude",
        "target": {"kind": "keep_blocks", "n": 4},
        "out": str(path / "out"),
    }
    cfg.update(overrides)
    file = path / "prune.yaml"
    file.write_text(json.dumps(cfg))  # JSON is valid YAML
    return str(file)


def test_prune_writes_checkpoint_and_report(tmp_path, capsys) -> None:
    assert main(["prune", "--config", write_config(tmp_path)]) == 0
    out = tmp_path / "out"
    assert {f.name for f in out.iterdir()} == {"plan.json", "spec.json", "model.safetensors", "report.json", "report.md"}
    report = json.loads((out / "report.json").read_text())
    assert len(report["removed"]) == 2
    assert report["stats"]["params_before"] - report["stats"]["params_after"] == 2 * (2 * (16 * 16 * 9 + 16))
    assert "| params |" in (out / "report.md").read_text()
    model = pk.load(out, build="zoo:SRNetStack", build_kwargs={"nf": 16, "nb": 6})
    assert len(model.resblocks) == 4


def test_prune_from_dense_weights_toml(tmp_path) -> None:
    torch.manual_seed(3)
    dense = zoo.SRNetStack(nf=16, nb=6)
    pk.save(dense, pk.Plan.identity(dense), tmp_path / "dense")
    toml = tmp_path / "prune.toml"
    toml.write_text(
        'model = "zoo:SRNetStack"\nweights = "%s"\ninput_shapes = [[1, 3, 8, 8]]\nstrategy = "positional"\n'
        'out = "%s"\n[model_kwargs]\nnf = 16\nnb = 6\n[[target]]\nkind = "keep_blocks"\nn = 5\n'
        % (tmp_path / "dense", tmp_path / "out")
    )
    assert main(["prune", "--config", str(toml)]) == 0
    small = pk.load(tmp_path / "out", build=lambda: zoo.SRNetStack(nf=16, nb=6))
    assert pk.load_plan(tmp_path / "out").removed == ["resblocks.5"]  # positional: drop the last block
    # the surviving layers carry the dense weights
    assert torch.equal(small.conv_in[0].weight, dense.conv_in[0].weight)
    assert torch.equal(small.resblocks[4].conv[2].weight, dense.resblocks[4].conv[2].weight)


@pytest.mark.parametrize(
    "override, field",
    [({"target": {"kind": "keep_blocks"}}, "target"), ({"surprise": 1}, "surprise"), ({"strategy": 3}, "strategy"),
     ({"uniform": True}, "uniform steers the latency planner")],
)
def test_prune_bad_config_names_field(tmp_path, capsys, override, field) -> None:
    assert main(["prune", "--config", write_config(tmp_path, **override)]) == 2
    assert field in capsys.readouterr().err


def test_prune_unreachable_target_exits_2(tmp_path, capsys) -> None:
    assert main(["prune", "--config", write_config(tmp_path, target={"kind": "keep_blocks", "n": 9})]) == 2
    assert "prunekit prune: error" in capsys.readouterr().err


def test_analyze_registered_model_defaults(capsys) -> None:
    """A registered model's own example inputs get the options they share with the model (`scale`),
    and its registered layout is used."""
    assert main(["analyze", "tecogan.frnet", "-m", "nb=3", "-m", "scale=2", "--json"]) == 0
    graph = pk.Graph.model_validate_json(capsys.readouterr().out)
    assert [u.path for u in graph.units] == [f"srnet.resblocks.{i}" for i in range(3)]
    assert graph.input_shapes["arg2"] == [1, 3, 64, 64]


def test_analyze_several_input_shapes(capsys) -> None:
    assert main(["analyze", "tecogan.frnet", "--input-shape", "1,3,8,8", "1,3,8,8", "1,3,32,32"]) == 0
    assert "10 units (10 removable blocks)" in capsys.readouterr().out


def test_prune_from_plain_safetensors_state_dict(tmp_path) -> None:
    from safetensors.torch import save_file

    torch.manual_seed(4)
    dense = zoo.SRNetStack(nf=16, nb=6)
    save_file({k: v.contiguous() for k, v in dense.state_dict().items()}, str(tmp_path / "dense.safetensors"))
    cfg = write_config(tmp_path, weights=str(tmp_path / "dense.safetensors"), strategy="positional")
    assert main(["prune", "--config", cfg]) == 0
    small = pk.load(tmp_path / "out", build=lambda: zoo.SRNetStack(nf=16, nb=6))
    assert torch.equal(small.resblocks[3].conv[0].weight, dense.resblocks[3].conv[0].weight)
    assert torch.equal(small.conv_out.weight, dense.conv_out.weight)


# --- the command itself: start-up, module lookup, pipes, OS errors ----------------------------------

PRUNEKIT = Path(sys.executable).with_name("prunekit")  # the installed console script

MY_MODELS = '''
from torch import nn

class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 1)

    def forward(self, x):
        return x + self.conv(x)

def EDSR(blocks=3):
    return nn.Sequential(*[Block() for _ in range(blocks)])
'''


def test_help_lists_every_command_without_importing_heavy_modules() -> None:
    """`prunekit --help` starts fast because it imports no command's code (measured: 0.11 s against
    4.6 s before, on the shared 2-core machine)."""
    probe = (
        "import sys\nfrom prunekit.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('torch', 'numpy', 'cv2', 'av', 'lpips', 'tecogan_plugin.nets') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True).stdout
    for name in ("analyze", "prune", "run", "bench", "convert", "eval", "tecogan-lmdb", "upscale", "--debug"):
        assert name in out
    assert out.strip().splitlines()[-1] == "[]"


def test_module_in_the_working_directory_and_a_closed_pipe(tmp_path) -> None:
    """`prunekit analyze my_models:EDSR` from the folder holding my_models.py, no PYTHONPATH; and
    `prunekit analyze --json | head` ends quietly (the JSON is larger than a pipe's buffer)."""
    (tmp_path / "my_models.py").write_text(MY_MODELS)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([str(PRUNEKIT), "analyze", "my_models:EDSR", "--input-shape", "1,4,4,4"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "3 removable blocks" in done.stdout
    cmd = [str(PRUNEKIT), "analyze", "my_models:EDSR", "-m", "blocks=400", "--input-shape", "1,4,4,4", "--json"]
    child = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    head = child.stdout.read(100)
    if not head.startswith(b"{"):
        child.wait(timeout=120)
        pytest.fail(f"no JSON on stdout (exit {child.returncode}): {child.stderr.read().decode()[-2000:]}")
    child.stdout.close()  # what `head` does once it has its lines
    err = child.stderr.read().decode()
    assert child.wait(timeout=120) == 141 and err == ""


@pytest.fixture
def failing_command(monkeypatch):
    """Registers `boom`, which raises the given exception."""
    from prunekit.cli import Command
    from prunekit.registry import COMMANDS

    def arm(exc: BaseException) -> None:
        def run(_args):
            raise exc

        monkeypatch.setitem(COMMANDS._items, "boom", Command("boom", "fails", lambda p: None, run))

    return arm


@pytest.mark.parametrize("exc,said", [
    (FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), "clips/in.mp4"), "clips/in.mp4: No such file or directory (check the path)"),
    (PermissionError(errno.EACCES, os.strerror(errno.EACCES), "/out/x.csv"), "/out/x.csv: Permission denied (check its permissions"),
    (IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), "report"), "report: Is a directory (a file was expected here"),
    (NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), "a.txt/b"), "a.txt/b: Not a directory"),
    (UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"),
     "not valid utf-8 (invalid start byte at position 0)"),
    (pk.ConfigError("out: bad"), "out: bad"),
])
def test_os_errors_are_one_line_with_exit_2_and_debug_shows_the_traceback(failing_command, capsys, exc, said) -> None:
    failing_command(exc)
    assert main(["boom"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("prunekit boom: error: ") and said in err
    assert "Traceback" not in err
    assert main(["boom", "--debug"]) == 2
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and said in err
    assert main(["--debug", "boom"]) == 2 and "Traceback" in capsys.readouterr().err


def test_bugs_still_raise(failing_command) -> None:
    failing_command(ZeroDivisionError("a bug, not a user mistake"))
    with pytest.raises(ZeroDivisionError):
        main(["boom"])



FAKE_PLUGIN = '''
from prunekit.command import LazyCommand, add_commands

COMMANDS = (LazyCommand("fake-new", "a new command", "fake_plugin_mod"),
            LazyCommand("analyze", "collides with the core command", "fake_plugin_mod"))


def register_commands(commands):
    add_commands(COMMANDS, commands)


def register(registries):
    registries.models.register("fake.model", lambda: None)
    registries.tasks.register("fake.task", lambda: None)
    register_commands(registries.commands)
'''


@pytest.fixture
def fake_plugin(tmp_path, monkeypatch):
    """An installed plugin (entry point `fake`) whose command `analyze` collides with prunekit's."""
    from importlib import metadata

    from prunekit import commands, plugins, registry

    (tmp_path / "fake_plugin_mod.py").write_text(FAKE_PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    ep = metadata.EntryPoint("fake", "fake_plugin_mod:register", plugins.ENTRY_POINT_GROUP)
    monkeypatch.setattr(metadata, "entry_points", lambda group=None: [ep] if group == plugins.ENTRY_POINT_GROUP else [])
    monkeypatch.setattr(plugins, "_loaded", set())
    monkeypatch.setattr(plugins, "_commands_loaded", set())
    for kind in ("MODELS", "TASKS", "COMMANDS"):
        monkeypatch.setattr(getattr(registry, kind), "_items", dict(getattr(registry, kind)._items))
    commands.register()
    return registry


def test_plugin_with_a_colliding_name_registers_nothing(fake_plugin) -> None:
    """A name collision is an error naming the plugin and the name, raised before anything of the
    plugin is registered: its model, task and non-colliding command stay out too."""
    from prunekit import plugins

    with pytest.warns(UserWarning, match=r"plugin 'fake' was not loaded: command 'analyze' is already registered"):
        plugins.load_plugins()
    assert "fake.model" not in fake_plugin.MODELS and "fake.task" not in fake_plugin.TASKS
    assert "fake-new" not in fake_plugin.COMMANDS
    assert fake_plugin.COMMANDS.get("analyze").module == "prunekit.commands.analyze"
    plugins._loaded.clear()
    with pytest.warns(UserWarning, match="command 'analyze' is already registered"):
        plugins.load_commands()  # the cheap path (prunekit --help) is all or nothing as well
    assert "fake-new" not in fake_plugin.COMMANDS


def test_add_commands_is_all_or_nothing() -> None:
    from prunekit.command import LazyCommand, add_commands
    from prunekit.errors import NameConflictError
    from prunekit.registry import Registry

    reg: Registry = Registry("command")
    first = LazyCommand("one", "first", "m")
    add_commands([first], reg)
    add_commands([first], reg)  # the same entry again is a no-op
    with pytest.raises(NameConflictError, match=r"'two' is already registered; none of \['three', 'two', 'two'\]"):
        add_commands([LazyCommand("three", "", "m"), LazyCommand("two", "", "m"), LazyCommand("two", "", "m")], reg)
    with pytest.raises(NameConflictError, match="'one'"):
        add_commands([LazyCommand("four", "", "m"), LazyCommand("one", "other", "m")], reg)
    assert reg.names(load_plugins=False) == ["one"]

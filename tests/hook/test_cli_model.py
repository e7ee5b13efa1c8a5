"""`--model package.module:function` on the analysis commands: a user's module, written here to a folder
of its own, builds a plain nn.TransformerEncoder classifier from the prepared data and returns it hooked;
the commands run on it with the data folder as they do on a checkpoint, and a bad --model is refused
with one message naming the option, exit 2, before any data are read and with nothing written."""

from __future__ import annotations

import textwrap

import pandas as pd
import pytest

from tests.cli_helpers import assert_ok, assert_user_error, invoke

USER_MODULE = textwrap.dedent('''
    import torch
    from torch import nn

    import isoprobe

    PATCHES = {"emg": 4, "acc": 2}
    IMPORTS = []


    class Classifier(nn.Module):
        def __init__(self, channels, time, n_classes, d_model=16):
            super().__init__()
            torch.manual_seed(0)
            self.size = {name: time // n for name, n in PATCHES.items()}
            self.embed = nn.ModuleDict({name: nn.Linear(self.size[name] * channels[name], d_model) for name in PATCHES})
            self.cls = nn.Parameter(torch.randn(1, 1, d_model))
            layer = nn.TransformerEncoderLayer(d_model, 2, 32, dropout=0.0, batch_first=True)
            self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
            self.head = nn.Linear(d_model, n_classes)

        def forward(self, emg, acc):
            parts = [self.cls.expand(len(emg), -1, -1)]
            for name, x in (("emg", emg), ("acc", acc)):
                n, size = PATCHES[name], self.size[name]
                parts.append(self.embed[name](x[:, : n * size].reshape(len(x), n, -1)))
            return self.head(self.encoder(torch.cat(parts, dim=1))[:, 0])


    def build(data):
        test = data.splits["test"]
        channels = {name: test.x[name].shape[2] for name in PATCHES}
        model = Classifier(channels, test.x["emg"].shape[1], data.n_classes).eval()
        return isoprobe.hook(model, isoprobe.TokenLayout.cls_first(PATCHES))


    def unhooked(data):
        return nn.Linear(2, 2)


    def broken(data):
        raise RuntimeError("weights.pt not found")
''')


@pytest.fixture()
def user_models(tmp_path, monkeypatch):
    folder = tmp_path / "code"
    folder.mkdir()
    (folder / "user_models.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(folder))
    return folder


def test_ablate_runs_on_a_function_that_returns_a_hooked_model(user_models, db2_redundant, tmp_path):
    out = tmp_path / "out"
    result = invoke("ablate", "--model", "user_models:build", "--data", db2_redundant, "--layers", "all",
                    "--pathway", "cross", "--bootstrap", 50, "--permutations", 99, "--out", out)
    assert_ok(result)
    table = pd.read_csv(out / "ablation.csv")
    assert list(table.layers) == ["L1", "L2", "L1-L2"] and set(table.pathway) == {"cross"}
    assert "user_models:build" in result.output
    assert '"model": "user_models:build"' in (out / "ablation.json").read_text()


@pytest.mark.parametrize("command", [["attribute", "--method", "attention", "--steps", 2, "--bootstrap", 20],
                                     ["shift", "--layers", "1", "--pathway", "cross", "--permutations", 10,
                                      "--bootstrap", 20]])
def test_attribute_and_shift_take_model(user_models, db2_redundant, tmp_path, command):
    out = tmp_path / "out"
    assert_ok(invoke(*command, "--model", "user_models:build", "--data", db2_redundant, "--out", out))
    assert any(path.suffix == ".csv" for path in out.iterdir())


@pytest.mark.parametrize("spec, fragment", [
    ("user_models", "package.module:function"),
    ("no_such_module:build", "no module no_such_module"),
    ("user_models:nothere", "user_models has no function nothere"),
])
def test_a_bad_model_is_refused_before_any_data_are_read(user_models, tmp_path, spec, fragment):
    """The data folder does not exist: the message is about --model, so --model was checked first."""
    out = tmp_path / "out"
    result = invoke("ablate", "--model", spec, "--data", tmp_path / "missing", "--out", out)
    assert_user_error(result, "--model", fragment)
    assert not out.exists()


@pytest.mark.parametrize("spec, fragment", [("user_models:unhooked", "returned Linear; return isoprobe.hook"),
                                            ("user_models:broken", "raised RuntimeError: weights.pt not found")])
def test_a_function_that_does_not_return_a_hooked_model_is_refused(user_models, db2_redundant, tmp_path, spec, fragment):
    out = tmp_path / "out"
    assert_user_error(invoke("ablate", "--model", spec, "--data", db2_redundant, "--out", out), "--model", fragment)
    assert not out.exists()


def test_model_needs_data_and_excludes_a_checkpoint(user_models, tmp_path):
    assert_user_error(invoke("ablate", "--model", "user_models:build"), "--data")
    assert_user_error(invoke("ablate", tmp_path / "checkpoint.pt", "--model", "user_models:build"), "not both")
    assert_user_error(invoke("compare"), "checkpoint", "--model")

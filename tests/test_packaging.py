"""Every sub-package ships in the wheel (setup.cfg lists packages explicitly, beside the _trainers/_plans mapping)."""
import configparser
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_setup_cfg_lists_every_subpackage():
    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    listed = set(config["options"]["packages"].split())
    found = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "nnunet_fuse").rglob("__init__.py")}
    assert found <= listed, f"add {sorted(found - listed)} to [options] packages in setup.cfg"


def test_the_dataset_converters_do_not_depend_on_classification():
    """datasets/ (converters, classes.json) is below classification/ and the trainers: a converter imports neither."""
    import ast

    root = Path(__file__).resolve().parents[1] / "nnunet_fuse" / "datasets"
    for module in root.glob("*.py"):
        tree = ast.parse(module.read_text())
        imported = [node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module]
        imported += [a.name for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names]
        assert not [m for m in imported if m.startswith(("nnunet_fuse.classification", "nnunet_fuse.training"))], \
            (module.name, imported)

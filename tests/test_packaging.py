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

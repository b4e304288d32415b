"""envs/permamap.yaml (conda, for --sdm conda users) stays in step with pyproject.toml."""

import re
import tomllib

import yaml


def test_conda_env_pins_match_pyproject(repo):
    deps = tomllib.loads((repo / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = dict(re.fullmatch(r"([A-Za-z0-9_.-]+)==([^;]+)", d).groups() for d in deps)
    env = yaml.safe_load((repo / "envs/permamap.yaml").read_text())
    conda = {}
    for item in env["dependencies"]:
        if isinstance(item, str) and "=" in item:
            name, version = item.split("=", 1)
            conda[name] = version
    missing = {k: v for k, v in pins.items() if conda.get(k) != v}
    assert not missing, f"envs/permamap.yaml lacks or differs on {missing}"
    assert conda["python"] == "3.11"

"""pyproject.toml, environment.yml, constraints.txt and the two commands agree."""

import re
from pathlib import Path

import tomllib
import yaml

ROOT = Path(__file__).resolve().parents[1]


def name_of(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ;]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def pyproject_requirements() -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    return project["dependencies"] + extras["test"] + extras["book"]


def environment_requirements() -> list[str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert "python=3.11" in env["dependencies"]
    return [r for r in pip if not r.startswith("-")]


def test_pyproject_and_environment_list_the_same_packages_and_ranges():
    ours = sorted(pyproject_requirements())
    theirs = sorted(environment_requirements())
    assert [name_of(r) for r in ours] == [name_of(r) for r in theirs]
    assert ours == theirs, "keep the version ranges identical too"


def test_runtime_and_test_dependencies_are_the_course_stack():
    names = {name_of(r) for r in pyproject_requirements()}
    assert names == {
        "torch", "numpy", "pandas", "scipy", "scikit-learn", "matplotlib", "tqdm",
        "safetensors", "aif360", "fairlearn", "captum", "shap", "opacus",
        "transformers", "tokenizers", "huggingface-hub", "fastapi", "fastapi-offline", "uvicorn", "httptools",
        "uvloop", "httpx", "pydantic",
        "duckdb", "polars", "pyarrow", "jupyterlab", "ipykernel",
        "pytest", "nbval", "pytest-xdist", "hypothesis", "ruff", "selenium", "filelock", "jupyter-book",
        "django-static-mathjax",
    }


def test_every_package_the_code_imports_is_declared():
    """A module imported by trustml_lab is a declared dependency (scipy was once used undeclared)."""
    import ast

    declared = {name_of(r) for r in pyproject_requirements()} | {"torchattacks"}
    aliases = {"sklearn": "scikit-learn", "yaml": None, "huggingface_hub": "huggingface-hub"}
    stdlib = set(__import__("sys").stdlib_module_names)
    missing = set()
    for path in (ROOT / "trustml_lab").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module else []
            for name in names:
                top = name.split(".")[0]
                if top in stdlib or top == "trustml_lab":
                    continue
                dist = aliases.get(top, top.replace("_", "-"))
                if dist is not None and dist not in declared:
                    missing.add(f"{top} (in {path.relative_to(ROOT)})")
    assert not missing, f"declare these in pyproject.toml: {sorted(missing)}"


def test_license_field_has_a_setuptools_that_reads_it():
    build = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]
    floor = next(r for r in build if r.startswith("setuptools"))
    assert floor.startswith("setuptools>=") and int(floor.split(">=")[1].split(".")[0]) >= 77


def test_constraints_pin_every_declared_package_exactly():
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[name.lower().replace("_", "-")] = version
    for requirement in pyproject_requirements():
        assert name_of(requirement) in pins, f"{requirement} is not pinned in constraints.txt"
    assert "torchattacks" in pins


def test_makefile_offers_the_commands_readme_promises():
    makefile = (ROOT / "Makefile").read_text()
    for target in ("lab:", "test:", "bench:", "notebooks:", "execute:"):
        assert re.search(rf"^{target}", makefile, re.M), target
    assert "--allow-root" in makefile and "LAB_ARGS" in makefile
    readme = (ROOT / "README.md").read_text()
    assert "make lab" in readme and "make test" in readme

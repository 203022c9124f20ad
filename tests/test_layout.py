"""The package layout: imports point down the pipeline, no module imports
another that imports it back, and loading a preset does not import the
training stack."""

import ast
import json
import pathlib
import subprocess
import sys

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "keras_directcopy"

# What each part of the package may import from the package (besides itself
# and the leaves `utils`, `version` and `catalog`, which import nothing from it
# and serve every part). The order of data flow: models <- data <- training; presets and
# evaluation use models, never training.
LEAVES = {"utils", "version", "catalog"}
ALLOWED_IMPORTS = {
    "utils": set(),
    "version": set(),
    "catalog": set(),
    "models": set(),
    "data": set(),
    "configs": {"models"},
    "presets": {"models", "configs"},
    "evaluation": {"models", "data", "presets"},
    # training takes the default recipe from the preset registry (preset_recipes).
    "training": {"models", "data", "configs", "evaluation", "presets"},
    "theory": {"models"},
    # The package's __init__ exposes the public API: models and presets.
    "__init__": {"models", "presets"},
}


def module_name(path):
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_imports(path):
    """Every `keras_directcopy` module `path` imports, at module level or
    inside a function, as dotted names."""
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names if alias.name.startswith("keras_directcopy"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("keras_directcopy"):
            if node.module == "keras_directcopy":  # `from keras_directcopy import X`: X may be a module
                names.update(f"keras_directcopy.{alias.name}" for alias in node.names)
            else:
                names.add(node.module)
                names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def part_of(name):
    """`keras_directcopy.models.heads` -> `models`; the package itself -> `__init__`."""
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def test_every_import_points_down_the_pipeline():
    upward = []
    for name, path in MODULES.items():
        own = part_of(name) if path.name != "__init__.py" or name.count(".") else "__init__"
        for imported in package_imports(path):
            target = part_of(imported)
            if imported not in MODULES and imported.rsplit(".", 1)[0] in MODULES:
                target = part_of(imported.rsplit(".", 1)[0])  # a name imported from a module
            if target != own and target not in ALLOWED_IMPORTS[own] | LEAVES:
                upward.append(f"{name} imports {imported}")
    assert not upward, "Imports against the layout:\n" + "\n".join(upward)


def test_no_import_cycles_between_modules():
    graph = {}
    for name, path in MODULES.items():
        targets = set()
        for imported in package_imports(path):
            while imported not in MODULES and "." in imported:
                imported = imported.rsplit(".", 1)[0]  # a name inside a module: the module
            if imported != name and imported in MODULES and not MODULES[imported].name == "__init__.py":
                targets.add(imported)
        graph[name] = targets

    cycles, state = [], {}

    def visit(node, stack):
        state[node] = "open"
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                cycles.append(" -> ".join(stack[stack.index(target):] + [target]))
            elif target not in state:
                visit(target, stack + [target])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not cycles, "Import cycles:\n" + "\n".join(cycles)


def test_the_layout_check_sees_a_violation(tmp_path):
    """The checker itself: a models module importing training is reported."""
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from keras_directcopy.training.loop import pretrain\n")
    imported = package_imports(bad)
    assert "keras_directcopy.training.loop" in imported
    assert part_of("keras_directcopy.training.loop") not in ALLOWED_IMPORTS["models"]


@pytest.mark.slow
def test_loading_a_preset_does_not_import_the_training_stack():
    """In a fresh interpreter; the classifier head of `include_top=True` is
    `models.heads`, which the layout test above keeps below presets."""
    code = (
        "import json, sys\n"
        "import keras_directcopy\n"
        "keras_directcopy.load_pretrained('cifar10')\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    modules = json.loads(result.stdout.strip().splitlines()[-1])
    assert "keras_directcopy.models.backbones" in modules  # the check sees what was imported
    unwanted = [
        name for name in modules
        if name.startswith(("keras_directcopy.training", "keras_directcopy.data", "keras_directcopy.evaluation",
                            "tensorflow_datasets", "keras_cv"))
    ]
    assert not unwanted, f"load_pretrained imported {unwanted}"


# The modules that loading a preset, fine-tuning and the predictor layers
# import, which must run on every Keras backend without TensorFlow
# (tests/test_backends.py runs them on JAX and PyTorch). TensorFlow-only parts
# are imported behind `utils.backend.is_tensorflow_backend()`, or inside the
# functions that need them.
BACKEND_NEUTRAL = {
    "keras_directcopy", "keras_directcopy.version", "keras_directcopy.catalog",
    "keras_directcopy.utils", "keras_directcopy.utils.backend", "keras_directcopy.utils.files",
    "keras_directcopy.utils.provenance", "keras_directcopy.utils.onednn",
    "keras_directcopy.models", "keras_directcopy.models.backbones", "keras_directcopy.models.heads",
    "keras_directcopy.models.predictor_matrices", "keras_directcopy.models.predictors",
    "keras_directcopy.models.schedules", "keras_directcopy.models.losses", "keras_directcopy.models.views",
    # The pretraining model: imported on TensorFlow and JAX, and free of
    # TensorFlow itself; its TensorFlow step is imported when it trains there.
    "keras_directcopy.models.non_contrastive",
    "keras_directcopy.presets", "keras_directcopy.presets.zoo", "keras_directcopy.presets.repo_layout",
    "keras_directcopy.presets.class_names",
    "keras_directcopy.evaluation", "keras_directcopy.evaluation.classifier",
}


def unconditional_imports(path):
    """The modules `path` imports whenever it is imported: module-level
    imports, except inside functions, classes and `if ...is_tensorflow_backend():` blocks."""
    names = set()

    def visit(statements):
        for node in statements:
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module)
                if node.module.startswith("keras_directcopy"):
                    names.update(f"{node.module}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.If) and "is_tensorflow_backend" in ast.unparse(node.test):
                visit(node.orelse)
            elif not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                for field in ("body", "orelse", "finalbody", "handlers"):
                    visit(getattr(node, field, []))

    visit(ast.parse(path.read_text()).body)
    return names


def test_the_backend_neutral_modules_import_no_tensorflow_only_module():
    offending = []
    for name in sorted(BACKEND_NEUTRAL):
        for imported in unconditional_imports(MODULES[name]):
            if imported not in MODULES and imported.rsplit(".", 1)[0] in MODULES:
                imported = imported.rsplit(".", 1)[0]  # a name imported from a module
            if imported.split(".")[0] == "tensorflow" or (
                imported.startswith("keras_directcopy") and imported not in BACKEND_NEUTRAL
            ):
                offending.append(f"{name} imports {imported}")
    assert not offending, "Imports that need TensorFlow on every backend:\n" + "\n".join(offending)


def test_the_backend_check_sees_a_tensorflow_import(tmp_path):
    """The checker itself: an unguarded import is reported, a guarded or a
    function-level one is not."""
    module = tmp_path / "module.py"
    module.write_text(
        "import tensorflow as tf\n"
        "if backend.is_tensorflow_backend():\n    from keras_directcopy.models import predictors\n"
        "def f():\n    import keras_directcopy.training.loop\n"
    )
    assert unconditional_imports(module) == {"tensorflow"}


REPOSITORY = PACKAGE.parent
STUDIES = REPOSITORY / "benchmarks"


def imported_roots(path):
    """The top-level names of every module `path` imports, anywhere in it."""
    roots = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            roots.add(node.module.split(".")[0])
    return roots


def test_the_library_and_the_scripts_import_no_study():
    """Studies live in benchmarks/: neither the package nor the user's
    commands import that folder or any of its modules."""
    study_modules = {"benchmarks"} | {path.stem for path in STUDIES.glob("*/*.py")}
    assert {"benchmark", "step_timing", "torch_peer", "comparison_report"} <= study_modules
    offending = [
        f"{path.relative_to(REPOSITORY)} imports {sorted(imported_roots(path) & study_modules)}"
        for path in sorted([*PACKAGE.rglob("*.py"), *(REPOSITORY / "scripts").glob("*.py")])
        if imported_roots(path) & study_modules
    ]
    assert not offending, "\n".join(offending)


def test_every_study_has_a_readme():
    studies = [path for path in STUDIES.iterdir() if path.is_dir() and not path.name.startswith((".", "_"))]
    assert len(studies) >= 4
    assert [study.name for study in studies if not (study / "README.md").exists()] == []

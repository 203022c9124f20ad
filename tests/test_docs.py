"""The documentation site (mkdocs.yml, docs/): it builds in strict mode, so a
broken link, a missing reference or a docstring mkdocstrings cannot read fails
here; its zoo page lists every preset of the registry; every model card is a
page; and the API reference documents every public name of the package."""

import glob
import importlib
import json
import os
import re
import subprocess
import sys
import types

import pytest

import keras_directcopy

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
API_PAGES = os.path.join(REPO_ROOT, "docs", "api")
# Files of model_cards/ that are not cards (docs/hooks/zoo_pages.py skips them too).
NOT_CARDS = ("template.md", "README.md")
# `::: dotted.path` at the start of a line: a mkdocstrings directive.
DIRECTIVE = re.compile(r"^:::\s+(\S+)\s*$", re.MULTILINE)


def public_names():
    """Every name `import keras_directcopy` exports: the package has no
    `__all__`, so its public attributes other than submodules, and its version."""
    names = {
        name for name in dir(keras_directcopy)
        if not name.startswith("_") and not isinstance(getattr(keras_directcopy, name), types.ModuleType)
    }
    return sorted(names | {"__version__"})


def documented_objects():
    """(dotted path, object) for every mkdocstrings directive of the API pages."""
    documented = []
    for page in sorted(glob.glob(os.path.join(API_PAGES, "*.md"))):
        with open(page, encoding="utf-8") as file:
            for path in DIRECTIVE.findall(file.read()):
                documented.append((path, resolve(path)))
    return documented


def resolve(dotted_path):
    """The object a dotted path names: the longest importable module prefix,
    then attributes."""
    parts = dotted_path.split(".")
    for split in range(len(parts), 0, -1):
        try:
            value = importlib.import_module(".".join(parts[:split]))
        except ModuleNotFoundError:
            continue
        for attribute in parts[split:]:
            value = getattr(value, attribute)
        return value
    raise ImportError(f"No module in {dotted_path!r}.")


def test_api_reference_documents_every_public_name():
    documented = documented_objects()
    missing = [
        name for name in public_names()
        if not any(path.rsplit(".", 1)[-1] == name and value is getattr(keras_directcopy, name)
                   for path, value in documented)
    ]
    assert not missing, f"Public names without a ::: directive in docs/api/*.md: {missing}"


def test_public_names_cover_the_pretraining_models():
    # The pretraining models enter the package namespace at import time, not
    # by a `from ... import` in __init__.py; they are public names all the same.
    assert {"NonContrastiveModel", "BYOL", "SimSiam", "DirectPred", "DirectCopy",
            "load_pretrained", "__version__"} <= set(public_names())
    assert "models" not in public_names()


@pytest.mark.slow
def test_site_builds_strictly_with_every_preset_and_model_card(tmp_path):
    site = tmp_path / "site"
    # Material prints a notice about MkDocs 2 on every build unless this is set.
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file",
         os.path.join(REPO_ROOT, "mkdocs.yml"), "--site-dir", str(site)],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr

    zoo_page = (site / "zoo" / "index.html").read_text(encoding="utf-8")
    for path in sorted(glob.glob(os.path.join(REPO_ROOT, "zoo", "*.json"))):
        with open(path, encoding="utf-8") as file:
            name = json.load(file)["name"]
        assert name in zoo_page, f"{name} missing from the zoo page"

    cards = [path for path in glob.glob(os.path.join(REPO_ROOT, "model_cards", "*.md"))
             if os.path.basename(path) not in NOT_CARDS]
    assert cards
    for path in cards:
        name = os.path.splitext(os.path.basename(path))[0]
        card_page = site / "zoo" / "cards" / name / "index.html"
        assert card_page.is_file(), f"no page for the model card {name}"
        assert f'href="cards/{name}/"' in zoo_page, f"the zoo page does not link to the card of {name}"

    # Each directive rendered: mkdocstrings gives the object's heading its dotted path as id.
    api_html = "".join(page.read_text(encoding="utf-8") for page in (site / "api").rglob("*.html"))
    for path, _ in documented_objects():
        assert f'id="{path}"' in api_html, f"{path} was not rendered in the API reference"

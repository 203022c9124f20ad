"""MkDocs hook: the model zoo page and the model card pages, generated at
build time from the preset registry (`zoo/*.json`) and the rendered cards
(`model_cards/<preset>.md`), so the site always shows what the registry
records and never a copy of it.

The generated pages live under `zoo/` in the site: `zoo/index.md` (one row
per preset) and `zoo/cards/<card>.md` (one page per card), and every card is
added to the "Model zoo" section of the navigation.
"""

import glob
import json
import os

from mkdocs.structure.files import File

ZOO_PAGE = "zoo/index.md"
CARDS_FOLDER = "zoo/cards"
NAV_SECTION = "Model zoo"
# Files of model_cards/ that are not cards: the Jinja2 template the cards are
# rendered from, and the folder's own README.
NOT_CARDS = ("template.md", "README.md")


def on_files(files, config):
    root = os.path.dirname(os.path.abspath(config.config_file_path))
    presets = read_presets(os.path.join(root, "zoo"))
    cards = read_cards(os.path.join(root, "model_cards"))
    for name, text in cards.items():
        files.append(File.generated(config, card_page(name), content=text))
    files.append(File.generated(config, ZOO_PAGE, content=zoo_page(presets, cards)))
    add_cards_to_nav(config.nav, cards)
    return files


def read_presets(zoo_dir):
    """The registry's entries, in file-name order."""
    presets = []
    for path in sorted(glob.glob(os.path.join(zoo_dir, "*.json"))):
        with open(path, encoding="utf-8") as file:
            presets.append(json.load(file))
    if not presets:
        raise ValueError(f"No preset files (*.json) in {zoo_dir}: the zoo page would be empty.")
    return presets


def read_cards(cards_dir):
    """Card name -> Markdown without the Hub metadata block: the YAML front
    matter is for the Hugging Face Hub (datasets, tags, model-index), and
    MkDocs would read it as page settings instead."""
    cards = {}
    for path in sorted(glob.glob(os.path.join(cards_dir, "*.md"))):
        if os.path.basename(path) in NOT_CARDS:
            continue
        with open(path, encoding="utf-8") as file:
            cards[os.path.splitext(os.path.basename(path))[0]] = strip_front_matter(file.read())
    return cards


def strip_front_matter(text):
    if not text.startswith("---\n"):
        return text
    end = text.find("\n---\n", 4)
    if end < 0:
        raise ValueError("A model card's front matter has no closing '---' line.")
    return text[end + len("\n---\n"):].lstrip("\n")


def card_page(name):
    return f"{CARDS_FOLDER}/{name}.md"


def add_cards_to_nav(nav, cards):
    for entry in nav or []:
        if isinstance(entry, dict) and NAV_SECTION in entry:
            entry[NAV_SECTION].extend({name: card_page(name)} for name in cards)
            return
    raise ValueError(f"mkdocs.yml's nav has no {NAV_SECTION!r} section for the model cards.")


def zoo_page(presets, cards):
    lines = [
        # The table needs the width of the page's table of contents.
        "---",
        "hide:",
        "  - toc",
        "---",
        "",
        "# Model zoo",
        "",
        "Every preset of the registry (`zoo/*.json` in the repository), as this build read it. "
        "Load one by its name or its alias with "
        "[`load_pretrained`][keras_directcopy.load_pretrained]; "
        "[`list_pretrained()`][keras_directcopy.list_pretrained] returns the same list in Python.",
        "",
        "Accuracies are top-1 with frozen features on the split named beside them: a weighted kNN "
        "and the final epoch of a linear probe, both measured by "
        "`scripts/evaluate.py --preset=NAME` (see [Fine-tuning and evaluation](../guides/fine-tuning.md)); "
        "each model card gives the protocol in full. "
        "A preset name links to its model card, where it has one; "
        "a preset without weights yet gives its training command when loaded.",
        "",
        "| preset | backbone | input | epochs | kNN top-1 | linear probe top-1 | evaluated on | weights |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines += [zoo_row(preset, cards) for preset in presets]
    lines += ["", "## Training commands", "",
              "The exact `scripts/pretrain.py` command each preset records (`train_command`):", ""]
    for preset in presets:
        lines += [f"### {preset['name']}", "", "```bash", preset["train_command"], "```", ""]
    return "\n".join(lines)


def zoo_row(preset, cards):
    name = preset["name"]
    metrics = preset.get("metrics") or {}
    knn = metrics.get("knn") or {}
    probe = metrics.get("linear_probe") or {}
    title = f"[{name}](cards/{name}.md)" if name in cards else name
    aliases = ", ".join(f"`{alias}`" for alias in preset.get("aliases", []))
    cells = [
        title + (f"<br>alias {aliases}" if aliases else ""),
        backbone_text(preset),
        " x ".join(str(side) for side in preset["input_shape"][:2]) + " px",
        str(preset["epochs"]),
        percent(knn.get("top1")) + (f" (k={knn['k']})" if knn.get("k") else ""),
        percent(probe.get("top1")),
        evaluation_text(preset["dataset"], knn),
        weights_text(preset),
    ]
    return "| " + " | ".join(cells) + " |"


def backbone_text(preset):
    width = (preset.get("backbone_kwargs") or {}).get("width_multiplier", 1.0)
    text = preset["backbone"] + (f", width {width:g}" if width != 1.0 else "")
    run = preset.get("run") or {}
    if run.get("encoder_parameters") and run.get("feature_dim"):
        text += f" ({run['encoder_parameters'] / 1e6:.2f}M parameters, {run['feature_dim']} features)"
    return text


def evaluation_text(dataset, knn):
    """The dataset and split the accuracies were measured on, e.g.
    "cifar10 `test` (10,000 images)"; the dataset alone before any metrics."""
    if not knn.get("test_split"):
        return dataset
    text = f"{dataset} `{knn['test_split']}`"
    if knn.get("test_examples"):
        text += f" ({knn['test_examples']:,} images)"
    return text


def weights_text(preset):
    weights = preset["weights"]
    if not weights.get("sha256"):
        return "not trained yet"
    if weights.get("bundled"):
        return "bundled in the package"
    return f"Hugging Face Hub: `{preset['hub']['repo_id']}`"


def percent(fraction):
    return "" if fraction is None else f"{100 * fraction:.2f}%"

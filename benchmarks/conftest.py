"""Each study's scripts import each other as top-level modules, as they do
when run from their folder; the studies' tests import them the same way."""

import sys
from pathlib import Path

for study in sorted(Path(__file__).resolve().parent.iterdir()):
    if (study / "__init__.py").exists():
        sys.path.insert(0, str(study))

"""scripts/encoder_flags.py: the shared encoder and dataset flags count as
the flags of the script that defines them, so its --help lists them."""

import sys
from pathlib import Path

from absl import flags

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

import encoder_flags  # noqa: E402


def test_the_shared_flags_are_key_flags_of_the_calling_script():
    values = flags.FlagValues()
    encoder_flags.define_encoder_flags(values)
    shared = {"preset", "encoder", "dataset", "data_dir", "download"}
    assert set(values) == shared
    # Key flags of a module are what absl's --help lists for it.
    assert {flag.name for flag in values.get_key_flags_for_module(sys.modules[__name__])} == shared
    assert not values.get_key_flags_for_module(encoder_flags)
    # A missing tfds dataset is downloaded unless --nodownload.
    assert values["download"].default is True

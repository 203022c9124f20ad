"""Publishing a preset: its repository folder, uploaded to the Hugging Face Hub.

`publish(preset, weights_path, repo_id)` checks that the preset may be
published (`checks.check_publishable`) and that `repo_id` names a namespace,
builds the folder (`hub_folder.prepare_repo_folder`), and uploads it with
`huggingface_hub.HfApi`: the repository is created if missing, then the
whole folder is one commit. A dry run only builds the folder.

Typical use, through `scripts/publish.py`:

```python
from keras_directcopy.presets import upload, zoo

preset = zoo.get_preset("directcopy_resnet20_cifar10")
folder = upload.publish(
    preset, "runs/directcopy_resnet20_cifar10/encoder.weights.h5",
    "keras-directcopy/directcopy_resnet20_cifar10", dry_run=True,
)
```
"""

import os
import shutil
import tempfile

from huggingface_hub import HfApi
from huggingface_hub.utils import HFValidationError, validate_repo_id

from keras_directcopy.presets.checks import check_publishable
from keras_directcopy.presets.hub_folder import prepare_repo_folder
from keras_directcopy.version import __version__

TOKEN_ENV = "HF_TOKEN"


def publish(
    preset,
    weights_path,
    repo_id,
    *,
    token=None,
    dry_run=False,
    out_dir=None,
    api=None,
    private=False,
    head_path=None,
    architecture_path=None,
):
    """Builds a preset's repository folder and uploads it to the Hub.

    Args:
        preset: a preset dict of the `zoo/` registry, with measured metrics
            and the weights' sha256.
        weights_path: local path of the trained encoder weights.
        repo_id: `"ORG/NAME"` of the Hub model repository.
        token: Hub token with write access; default: the `HF_TOKEN`
            environment variable. Not needed with `dry_run=True`.
        dry_run: only build the folder, upload nothing.
        out_dir: where to build the folder. Default: a new temporary
            directory, removed after a successful or failed upload (kept on
            a dry run).
        api: an object with `HfApi`'s `create_repo` and `upload_folder`;
            default `HfApi(token=token)`.
        private: create the repository private. A repository that already
            exists keeps its visibility.
        head_path: local path of the linear-probe head weights, for a
            preset that declares a head.
        architecture_path: local path of the architecture file, for a
            preset that declares one (default: next to `weights_path`).

    Returns:
        The folder path on a dry run, otherwise the URL of the Hub commit.

    Raises:
        ValueError: if the preset has no measured metrics (run
            scripts/evaluate.py and record them in the preset), on a bad
            `repo_id`, a missing token, or any error of
            `prepare_repo_folder`.
    """

    check_publishable(preset)
    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        raise ValueError(f"Invalid repo_id {repo_id!r}: {error}") from error
    if "/" not in repo_id:
        # Without a namespace the Hub picks the token owner's, which may not
        # be where the registry's `hub.repo_id` points.
        raise ValueError(f"repo_id must be 'ORG/NAME' or 'USER/NAME', got {repo_id!r}.")
    if not dry_run:
        token = token or os.environ.get(TOKEN_ENV)
        if not token:
            raise ValueError(
                "Uploading needs a Hugging Face token with write access: pass token=... or set "
                f"the {TOKEN_ENV} environment variable. Use dry_run=True to only build the folder."
            )
    temporary_root = None
    if out_dir is None:
        temporary_root = tempfile.mkdtemp(prefix="keras-directcopy-publish-")
        out_dir = os.path.join(temporary_root, preset["name"])
    try:
        folder = prepare_repo_folder(
            preset, weights_path, out_dir, head_path, repo_id=repo_id,
            architecture_path=architecture_path,
        )
        if dry_run:
            temporary_root = None  # the caller inspects the folder
            return folder
        api = api or HfApi(
            token=token, library_name="keras-directcopy", library_version=__version__
        )
        api.create_repo(repo_id, repo_type="model", exist_ok=True, private=private)
        commit = api.upload_folder(
            repo_id=repo_id,
            folder_path=folder,
            repo_type="model",
            commit_message=(
                f"Upload {preset['name']} (keras-directcopy {__version__})"
            ),
        )
        return getattr(commit, "commit_url", None) or str(commit)
    finally:
        if temporary_root is not None:
            shutil.rmtree(temporary_root, ignore_errors=True)

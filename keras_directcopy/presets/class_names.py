"""The class names of a preset's classifier, and `decode_predictions`.

A preset with a classifier head (`load_pretrained(..., include_top=True)`)
records the names of its classes in label order (`class_names` in its
registry entry or `config.json`), so that its predictions can be read as
`keras.applications.imagenet_utils.decode_predictions` reads ImageNet's.
"""

import numpy as np

from keras_directcopy.presets.zoo import load_spec


def class_names(name):
    """The class names of a preset's classifier, in label order.

    Args:
        name: a preset name or alias, a local preset folder, or
            `"hf://ORG/REPO"`, as for `load_pretrained`.

    Returns:
        A list of `num_classes` strings.

    Raises:
        ValueError: the preset records no class names.
    """
    spec = load_spec(name)
    names = spec.get("class_names")
    if not names:
        raise ValueError(
            f"{spec['name']!r} records no class names. A preset with a classifier head lists them "
            "in label order as 'class_names' in its registry entry or config.json."
        )
    return list(names)


def decode_predictions(predictions, name, top=5):
    """The `top` classes of each prediction, best first, with their scores.

    Args:
        predictions: `(N, num_classes)` scores of
            `load_pretrained(name, include_top=True)` (probabilities with
            the default softmax, or logits).
        name: the preset the predictions come from (see `class_names`).
        top: how many classes per prediction.

    Returns:
        A list of N lists of `top` tuples `(class_index, class_name, score)`,
        highest score first.

    Raises:
        ValueError: `predictions` is not `(N, num_classes)` for this preset,
            or `top` is not between 1 and `num_classes`.
    """
    names = class_names(name)
    scores = np.asarray(predictions)
    if scores.ndim != 2 or scores.shape[1] != len(names):
        raise ValueError(
            f"decode_predictions expects scores of shape (N, {len(names)}) for {name!r}; got "
            f"{scores.shape}."
        )
    if not isinstance(top, (int, np.integer)) or not 1 <= top <= len(names):
        raise ValueError(f"top must be an integer from 1 to {len(names)}; got {top!r}.")
    order = np.argsort(-scores, axis=1, kind="stable")[:, :top]
    return [
        [(int(index), names[index], float(row[index])) for index in best]
        for row, best in zip(scores, order)
    ]

"""CIFAR in the layout of the official binary archives, which the upstream
TFDS builders read once downloaded: for tests that run those builders with
their download stubbed by such a local copy."""


def write_cifar10_archive(root, train, test, class_names):
    """Writes `root/cifar-10-batches-bin/` as the extracted archive holds it.

    Args:
        root: the directory the stubbed `download_and_extract` returns.
        train, test: `(uint8 images (N, 32, 32, 3), labels (N,))`; the
            training examples all go into `data_batch_1.bin`, batches 2 to 5
            stay empty.
        class_names: the ten names, in label order.

    Returns:
        `root`.
    """
    batches = root / "cifar-10-batches-bin"
    batches.mkdir(parents=True)
    (batches / "batches.meta.txt").write_text("\n".join(class_names) + "\n")
    _write_records(batches / "data_batch_1.bin", train[0], [train[1]])
    for index in range(2, 6):
        (batches / f"data_batch_{index}.bin").write_bytes(b"")
    _write_records(batches / "test_batch.bin", test[0], [test[1]])
    return root


def write_cifar100_archive(root, arrays, fine_names, coarse_names):
    """Writes `root/cifar-100-binary/` as the extracted archive holds it.

    Args:
        root: the directory the stubbed `download_and_extract` returns.
        arrays: split -> `(uint8 images (N, 32, 32, 3), fine labels (N,),
            coarse labels (N,))`.
        fine_names, coarse_names: the class names, in label order.

    Returns:
        `root`.
    """
    binary = root / "cifar-100-binary"
    binary.mkdir(parents=True)
    (binary / "fine_label_names.txt").write_text("\n".join(fine_names) + "\n")
    (binary / "coarse_label_names.txt").write_text("\n".join(coarse_names) + "\n")
    for split, (images, fine, coarse) in arrays.items():
        _write_records(binary / f"{split}.bin", images, [coarse, fine])
    return root


def _write_records(path, images, label_columns):
    """The official record: one byte per label, then the image as three
    32 x 32 planes (R, G, B)."""
    with open(path, "wb") as file:
        for index, image in enumerate(images):
            file.write(bytes(int(column[index]) for column in label_columns))
            file.write(image.transpose(2, 0, 1).tobytes())

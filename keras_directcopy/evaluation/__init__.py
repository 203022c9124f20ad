"""Evaluation of a pretrained encoder: weighted kNN (`knn`), the linear probe
on frozen features (`linear_probe`), both on a labelled dataset with a
metrics record (`evaluate`), and a classifier to fine-tune (`classifier`).
Uses models, data and presets, never the training stack."""

from keras_directcopy.evaluation.classifier import build_classifier
from keras_directcopy.evaluation.evaluate import evaluate_encoder, load_encoder
from keras_directcopy.evaluation.knn import knn_accuracy

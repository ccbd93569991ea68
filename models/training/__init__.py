"""Detector training (the only package allowed to import torch and ultralytics, lazily, inside functions)."""

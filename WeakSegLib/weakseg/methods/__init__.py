"""Segmentation methods: one module per method, each exporting a :class:`~weakseg.methods.spec.MethodSpec`.

:mod:`weakseg.methods.registry` lists them. This package imports nothing heavy, so that
listing the methods does not import torch.
"""

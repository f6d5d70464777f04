"""The build's TensorFlow-side work: model loading, conversion, verification, inspect.

The build itself is ``edgec.builder``; the compression stages are ``edgec.stages``.
"""

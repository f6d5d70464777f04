"""edgec: from a Keras model to firmware-ready int8 TFLite artifacts."""

__version__ = "0.1.0"

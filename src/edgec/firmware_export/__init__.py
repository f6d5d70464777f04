"""What firmware needs: C arrays of the model, and writing outputs atomically."""

from edgec.firmware_export.c_array import model_data_sources
from edgec.firmware_export.names import c_identifier
from edgec.firmware_export.writer import prepare_output_dir, write_outputs

__all__ = ["c_identifier", "model_data_sources", "prepare_output_dir", "write_outputs"]

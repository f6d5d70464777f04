"""What firmware needs: the model array, settings and op headers, packaged for a build."""

from edgec.export.c_array import check_section, model_data_sources
from edgec.export.names import c_identifier
from edgec.export.package import LAYOUTS, ExportSpec, export_package, firmware_info
from edgec.export.writer import prepare_output_dir, write_outputs

__all__ = [
    "LAYOUTS",
    "ExportSpec",
    "c_identifier",
    "check_section",
    "export_package",
    "firmware_info",
    "model_data_sources",
    "prepare_output_dir",
    "write_outputs",
]

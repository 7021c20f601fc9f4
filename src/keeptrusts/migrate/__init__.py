"""Config migration from other gateways (today: LiteLLM) into a Keeptrusts policy config."""

from keeptrusts.migrate.litellm import Conversion, convert_litellm, dump_yaml, load_litellm
from keeptrusts.migrate.report import Note, Report
from keeptrusts.migrate.verify import gateway_routes, route_mismatches

__all__ = [
    "Conversion",
    "Note",
    "Report",
    "convert_litellm",
    "dump_yaml",
    "gateway_routes",
    "load_litellm",
    "route_mismatches",
]

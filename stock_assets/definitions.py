"""The code location: the definitions built from the settings of this process."""

from stock_assets.defs import build_definitions
from stock_assets.settings import load_settings

settings = load_settings()
defs = build_definitions(settings)

"""prosocial: a prosocial backbone for conversational agents (Kim et al., EMNLP 2022)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("prosocial")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

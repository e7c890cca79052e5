"""tessera: vector quantization and semantic IDs."""
from ._tessera import __version__  # noqa: F401

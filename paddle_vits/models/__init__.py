"""Model families. Importing this package registers every variant."""
from . import cait, crossformer, crossvit, wavevit  # noqa: F401

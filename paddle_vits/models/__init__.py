"""Model families, one file each. Importing this package registers every variant.

Every model follows ``docs/model_contract.md``; :mod:`.contract` holds the helpers
all families share (the head builder and the input check).
"""
from . import cait, crossformer, crossvit, wavevit  # noqa: F401

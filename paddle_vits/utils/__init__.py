"""Small utilities shared by the package and the scripts."""
from .helpers import to_2tuple, atomic_save, set_num_threads

__all__ = ["to_2tuple", "atomic_save", "set_num_threads"]

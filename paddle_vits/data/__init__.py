"""Datasets and preprocessing. Import the submodules directly (``paddle_vits.data.imagenet``, ...)."""

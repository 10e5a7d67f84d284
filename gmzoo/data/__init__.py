"""Data: embedded and TFDS image sets as random-access sources, batching, transforms, 2-D toys.

Modules: source (ArraySource), embedded (digits, mnist5k), tfds_source (load_tfds),
registry (load, list_datasets), pipeline (BatchIterator), transforms, toys.
"""

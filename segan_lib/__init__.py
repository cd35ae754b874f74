"""segan_lib: the tested library behind the SegAN course.

Models, losses, metrics, data and one training engine; the notebooks import it.
"""
__version__ = "0.1.0"

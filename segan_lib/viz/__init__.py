"""Plotting helpers that return matplotlib Figures, one module per topic.

* :mod:`segan_lib.viz.losses`: loss landscapes of the pixel losses (notebook 03's explorer).
* :mod:`segan_lib.viz.segmentation`: images, masks, overlays and training curves.
* :mod:`segan_lib.viz.gan`: 2-D GAN samples, mask grids and GAN training curves.

Import the submodule you need (``from segan_lib.viz.losses import plot_loss_landscape``);
this package imports none of them, so one topic's dependencies never load with another's.
"""

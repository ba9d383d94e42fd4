"""sda-plots: loss curves and preview spectrograms for sda runs, as PNG files.

Install it next to sda and it registers through the ``sda`` entry-point group
(``plots = "sda_plots:Plots"``); nothing else is needed. See README.md.
"""

from sda_plots.plugin import LOSS_FILENAME, SPECTROGRAM_FILENAME, Plots
from sda_plots.settings import PLUGIN_NAME, PlotSettings

__all__ = ["LOSS_FILENAME", "PLUGIN_NAME", "SPECTROGRAM_FILENAME", "PlotSettings", "Plots"]
__version__ = "0.1.0"

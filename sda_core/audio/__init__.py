"""Audio services that know nothing of plugins: paths, reading and decoding, resampling, WAV writing."""

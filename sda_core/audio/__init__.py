"""Audio services that know nothing of plugins: paths, formats (what is special about MP3), decoding
(and the surviving part of damaged files), the decode cache, resampling, reading, WAV writing."""

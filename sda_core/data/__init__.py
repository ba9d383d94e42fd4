"""Dataset services that know nothing of plugins: scan, chunks, splits, analysis, augmentation pipeline, loaders."""

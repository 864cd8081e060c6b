"""Face data for training: readers, landmark cache, forgery generators, augmentation."""

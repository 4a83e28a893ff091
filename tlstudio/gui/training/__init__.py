"""The Train panel: configuration, the training worker, live monitor and run history."""

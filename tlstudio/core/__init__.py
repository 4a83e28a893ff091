"""Qt-free, torch-free core: project store, annotations, image reading, formats."""

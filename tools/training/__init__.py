"""The pieces of `tools/train-bundle`: labelled photos → a signed AADS Edge model bundle."""

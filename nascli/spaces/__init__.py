"""Search spaces: sample, mutate, enumerate neighbours, encode, hash and build architectures."""

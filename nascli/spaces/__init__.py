"""Search spaces: sample, mutate, enumerate neighbours, encode, hash and build architectures."""

from nascli.spaces import chain, fusion, head, nb201, text  # noqa: E402,F401  (importing a module registers its space)

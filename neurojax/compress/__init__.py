"""Quantisation and lossless entropy coding of weights (bits on the wire).

Oland, thesis ch. 3 (Algorithms 1 and 2), split as in GRACE (Xu et al.,
ICDCS 2021: quantiser, residual memory, collective): the quantiser
(:mod:`neurojax.compress.quantize`, jittable, in-graph entropy and bit widths) and the bit-exact host codec
(:mod:`neurojax.compress.codec`: canonical Huffman and ANS), tied together
per PyTree by :mod:`neurojax.compress.tree`.

``neurojax.compress.quantize`` is the *module*; its functions are
``quantize.quantize`` / ``quantize.dequantize`` (not re-exported here, so
the module name stays unambiguous).
"""
from neurojax.compress import codec, quantize, tree
from neurojax.compress.codec import (PackageInfo, canonical_codewords, decode, encode,
                                     entropy_of_codes, huffman_code_lengths, info)
from neurojax.compress.quantize import (Quantized, bin_width, bits_from_entropy,
                                        bits_from_gradient_rms, compression_ratio,
                                        dynamic_quantize, entropy_bits, estimate_entropy,
                                        histogram, rms, value_range)
from neurojax.compress.tree import (GROUPINGS, LeafStats, TreeStats, compress_array,
                                    compress_tree, decompress_array, decompress_tree,
                                    group_vector, layer_groups, quantize_tree, split_group)

__all__ = [
    "codec", "quantize", "tree",
    "PackageInfo", "canonical_codewords", "decode", "encode", "entropy_of_codes",
    "huffman_code_lengths", "info", "Quantized", "bin_width", "bits_from_entropy",
    "bits_from_gradient_rms", "compression_ratio", "dynamic_quantize", "entropy_bits",
    "estimate_entropy", "histogram", "rms", "value_range", "LeafStats", "TreeStats",
    "compress_array", "compress_tree", "decompress_array", "decompress_tree", "quantize_tree",
    "GROUPINGS", "layer_groups", "group_vector", "split_group",
]

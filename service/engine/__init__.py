"""The engine: image decoding, the cross-request batcher and its lanes, image-encoder backends."""

"""Image, video and distribution metrics, each computed as its reference implementation computes it."""

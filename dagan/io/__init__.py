"""Files in and out: images, video, checkpoints, arrays, atomic writes, colour maps, streaming.

**The frame contract.** Every reader yields, every writer takes, and every pipeline passes frames
as ``numpy`` arrays of shape (H, W, 3), dtype float32, RGB in [0, 1]:

- ``image.read_image``, ``image.as_frame`` (paths, arrays, PIL images), ``video.iter_frames`` and
  ``video.read_video`` (videos and frame folders alike) return them;
  ``image.to_float_rgb`` turns any decoded pixels (grey, RGBA, 8 or 16 bits) into one;
- ``image.resize_frame``, ``video.Mp4Writer``, ``video.PngDirectoryWriter`` and ``image.write_png``
  take them. They also take uint8 pixel values as they are (a renderer's own output), but
  a float frame above 1 is refused (``image.check_frame``): a 0-255 frame where [0, 1] belongs
  is a bug, and dividing it by 255 a second time is how such bugs hide.

One reader is the exception, named for it: ``video.iter_pixels`` yields decoded uint8 pixels, for
``dagan crop``, which cuts a face out of a large frame before converting only that.

**Writers own their output** (``atomic.py``): each writes under a temporary name beside its target
and moves it into place only when complete; used as a context manager it finishes on success and
discards everything on failure. The rules of which paths an output may take are in ``atomic.py``.
"""

"""The column names and roles of an image table (no heavy imports: verticals read these)."""

IMAGE_ROLE = "image"  # the image's path in the ZIP: the row id of predictions
IMAGE_DATA_ROLE = "image_data"  # optional: another column holding the bytes
# The encoded bytes, as the archive reader stores them; internal ("__"), so no person maps it.
IMAGE_BYTES_COLUMN = "__image_bytes__"
MIN_PER_CLASS = 10

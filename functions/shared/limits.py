"""Limits on values that training, the stores and serving all hold to (one place, no imports).

- MAX_NUMERIC_MAGNITUDE: the largest magnitude a numeric feature may have: float32's range. Models
  convert to ONNX in double precision now, but versions registered before take float32 inputs, in
  which a larger value would become infinity and the answer NaN: validation refuses such values in
  training data, serving in requests (and an answer that is still not finite is refused too).
- MAX_CATEGORY_LENGTH: the longest categorical value, class label or entity id, in characters
  (the predict API accepts the same). Its UTF-8 form (at most 4 bytes a character) fits the online
  store's entity key; a megabyte string would not fit a DynamoDB item at all.
"""

MAX_NUMERIC_MAGNITUDE = 3.4028234663852886e38  # numpy.finfo(numpy.float32).max
MAX_CATEGORY_LENGTH = 256

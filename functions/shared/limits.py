"""Limits on values that training, the stores and serving all hold to (one place, no imports).

- MAX_NUMERIC_MAGNITUDE: the largest magnitude a numeric feature may have. Served models run in
  float32 (ONNX), so a value beyond float32's range would become infinity inside the model and its
  answer NaN: validation refuses such values in training data, serving in requests.
- MAX_CATEGORY_LENGTH: the longest categorical value, class label or entity id, in characters
  (the predict API accepts the same). Its UTF-8 form (at most 4 bytes a character) fits the online
  store's entity key; a megabyte string would not fit a DynamoDB item at all.
"""

MAX_NUMERIC_MAGNITUDE = 3.4028234663852886e38  # numpy.finfo(numpy.float32).max
MAX_CATEGORY_LENGTH = 256

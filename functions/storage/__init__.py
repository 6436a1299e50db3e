"""Storage ports and their AWS adapters.

Domain modules receive an `ObjectStore` (objects.py) or a part's table store and never touch
boto3; the adapters (s3.py, and each part's DynamoDB store over dynamo.py) own the
translation of AWS errors into domain errors (errors.py).
"""

"""Code that runs in AWS Lambda: one package per part, thin handlers over domain modules."""

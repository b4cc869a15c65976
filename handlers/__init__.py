"""Lambda handlers of the batch pipeline: stdlib + boto3 + jobcontract only, no import-time work."""

"""Where runs, data and the hub live: local folders and object storage (gs://, s3://) alike."""

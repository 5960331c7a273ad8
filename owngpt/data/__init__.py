"""Data stage: read a person's files, clean them, split them and tokenize them into shards."""

"""Everything that talks to the Docker engine: the SDK is imported here and nowhere else."""

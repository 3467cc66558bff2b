"""The background side: drain the command streams into the stores, through RQ jobs."""

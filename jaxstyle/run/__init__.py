"""A run: jobs into problems, the one run loop, batches, sweeps, video, several processes, the paper's figures."""

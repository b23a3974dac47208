"""What runs inside a job's Ray Job: training, sweeps and inference."""

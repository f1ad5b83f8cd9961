"""The driver process: assembling and running the Tuner, the Ray session and cluster, the ledger, resume."""

"""The work on the database and the cluster: ingest, graphs, kernels, training, prediction."""

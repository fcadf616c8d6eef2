"""The runtime every layer shares: settings, database, Dask client, artifact store, provenance."""

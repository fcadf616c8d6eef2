"""The science and its data classes: structures in, arrays out.

Nothing here imports SQLAlchemy, psycopg, Dask or lark (an import-linter contract in
.ci/run keeps it so), so Dask workers and notebooks load only the science.
"""

"""The filter language that selects structures (`--where`, the GraphQL filter input), and the
one way to select structures (`crystaldb.query.selection`).

The language is four modules, kept apart as in optimade-python-tools so that another backend
(or another front end) can reuse the others:

- `crystaldb.query.ast`: the node types and `FilterError`, pure data;
- `crystaldb.query.fields`: the field table (`describe_fields()` for `--help` and the docs),
  the limits, and the checks of a node against the table;
- `crystaldb.query.grammar`: the lark grammar and transformer, text to AST: `parse(text)`;
- `crystaldb.query.sql`: AST to one SQLAlchemy boolean over `structures`: `to_sql(node)`,
  and `where(text)`, parse then compile:
  ``select(Structure.id).where(where("nsites <= 100"))``.

Examples::

    elements has all C, H and not elements has any Pb, Cd and nsites <= 100
    band_gap > 1.5 and band_gap <= 3 and spacegroup = 14
    (crystal_system = "monoclinic" or spacegroup in (2, 14, 19)) and nelements >= 3
    band_gap[HSE06] < 2 and release = "omdb-gap1:1.1" and cod = 7033509
    flags has any formula_sum_mismatch, deuterated and flags excludes symops_contradict_symbol

Each module's docstring gives the semantics it implements: syntax in `grammar`, values and
limits in `fields`, what a test selects in `sql`, error messages in `ast`.
"""

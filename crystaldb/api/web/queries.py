"""The GraphQL operations behind the pages, written once here so that they read like the API's
own documentation examples."""

SEARCH = """
query Search($filter: StructureFilter, $sort: StructureSort!, $first: Int!, $after: String,
             $functional: String!, $model: String, $byModel: Boolean!) {
  structures(filter: $filter, sort: $sort, first: $first, after: $after,
             bandGapFunctional: $functional, bandGapModel: $model) {
    totalCount
    pageInfo { hasNextPage endCursor }
    edges { node {
      id reducedFormula nsites spaceGroup { number symbol }
      labels { property value calculation { functional } }
      predictions @include(if: $byModel) { property value model { name } }
    } }
  }
  models(first: 100) { name }
}
"""

STRUCTURE = """
query Structure($id: ID!) {
  structure(id: $id) {
    id lattice nsites elements reducedFormula hillFormula anonymousFormula
    spaceGroup { number symbol symprec } crystalSystem volume density flags
    externalIds { database id }
    labels { property value unit calculation { functional code codeVersion reference } }
    predictions {
      property value uncertainty createdAt model { name architecture } run { id kind status }
    }
    releases { name version split }
  }
}
"""

DOWNLOAD = """
query Download($id: ID!, $cif: Boolean!, $xyz: Boolean!) {
  structure(id: $id) { reducedFormula cif @include(if: $cif) extxyz @include(if: $xyz) }
}
"""

MODELS = """
query Models { models(first: 100) { name architecture createdAt } }
"""

PREDICT = """
mutation Predict($file: Upload!, $models: [String!]!) {
  predictBandGap(file: $file, models: $models) {
    reducedFormula nsites spacegroupSymbol spacegroupNumber mean spread
    predictions { value unit model { name architecture } }
  }
}
"""

VIEW = """
query View($id: ID!, $recipe: String!, $withGraph: Boolean!) {
  structure(id: $id) {
    id reducedFormula lattice sites { species cartesian }
    quotientGraph(recipe: $recipe) @include(if: $withGraph) {
      recipe { name } numEdges edgeSrc edgeDst edgeImages
    }
  }
}
"""

RELEASES = """
query Releases { releases { name version query splitSpec members createdAt } }
"""

MODEL = """
query Model($name: String!) {
  models(name: $name, first: 1) {
    id name architecture property hyperparameters split metrics createdAt
    release { name version } run { id kind status }
  }
}
"""

"""Problem families with known constants; importing this package registers every family.

A new family is one module here and one name in the import below (README "Extending")."""

from synthetic.problems import e2_two_basins, h1_pseudo_huber, l2_logistic, q1_quadratic  # noqa: F401

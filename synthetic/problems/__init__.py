"""Problem families with known constants; importing this package registers every family."""

from synthetic.problems import e2_two_basins, l2_logistic, q1_quadratic  # noqa: F401

"""The trusted side of grading (not shipped to students): the judge, the static scan, the hidden cases."""

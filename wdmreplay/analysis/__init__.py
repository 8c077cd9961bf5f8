"""Results → answers: expectation diff, consistency checker, statistics, report, compare."""

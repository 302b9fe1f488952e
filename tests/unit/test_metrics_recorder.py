from stack.metrics.recorder import (
    bucket_index,
)


def test_bucket_index_is_the_first_bound_that_holds_the_value():
    assert bucket_index((1, 5, 10), 0.5) == 0
    assert bucket_index((1, 5, 10), 1) == 0
    assert bucket_index((1, 5, 10), 7) == 2
    assert bucket_index((1, 5, 10), 11) == 3  # +Inf

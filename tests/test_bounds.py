"""bounds: integer ranges, finite floats and memory cost, as argparse types and as plain checks."""

from __future__ import annotations

import argparse

import pytest
import torch

from repscope import bounds
from repscope.errors import BudgetError, RangeError, RepscopeError


@pytest.mark.parametrize("text, expected", [("1", 1), (" 7 ", 7), ("100", 100), (5, 5)])
def test_positive_int_accepts_integers_in_range(text, expected):
    assert bounds.positive_int("n", 1, 100)(text) == expected


@pytest.mark.parametrize("text", ["0", "101", "-1", "1.5", "1e2", "", "abc", "nan", "9" * 5000, True, 2.0, None])
def test_positive_int_refuses_the_rest_in_one_line(text):
    with pytest.raises(RangeError) as err:
        bounds.positive_int("n", 1, 100)(text)
    message = str(err.value)
    assert message.startswith("n must be an integer in [1, 100], got") and "\n" not in message and len(message) < 120


@pytest.mark.parametrize("text", ["nan", "inf", "-inf", "1e309", "-1e309", "abc", "", "-0.1", "11"])
def test_finite_float_refuses_non_finite_and_out_of_range(text):
    with pytest.raises(RangeError, match=r"lr must be a finite number in \[0.0, 10.0\]"):
        bounds.finite_float("lr", 0.0, 10.0)(text)
    assert bounds.finite_float("lr", 0.0, 10.0)("1e-3") == 1e-3 and bounds.finite_float("x")("-1e300") == -1e300


def test_bounds_are_argparse_types_with_the_option_named_once():
    parser = argparse.ArgumentParser(exit_on_error=False)
    parser.add_argument("--iters", type=bounds.OPTIONS["--iters"])
    parser.add_argument("--lr", type=bounds.OPTIONS["--lr"])
    assert parser.parse_args(["--iters", "3", "--lr", "0.5"]) == argparse.Namespace(iters=3, lr=0.5)
    with pytest.raises(argparse.ArgumentError, match=r"argument --iters: must be an integer in \[1, 100000\], got '0'$"):
        parser.parse_args(["--iters", "0"])
    for value in ("nan", "0", "-1"):
        with pytest.raises(argparse.ArgumentError, match=rf"argument --lr: must be a finite number > 0.0, got '{value}'$"):
            parser.parse_args(["--lr", value])
    assert issubclass(RangeError, RepscopeError) and issubclass(RangeError, argparse.ArgumentTypeError)


def test_check_tensor_budget_counts_bytes_and_names_the_cost():
    assert bounds.check_tensor_budget((4, 3, 8, 8), torch.float64, budget=10**6) == 4 * 3 * 8 * 8 * 8
    with pytest.raises(BudgetError) as err:
        bounds.check_tensor_budget((100_000, 3, 129, 129), torch.float32, "crops for --fit 100000", budget=1 << 30)
    assert str(err.value) == ("crops for --fit 100000 would need 18.6 GiB (100000x3x129x129 float32), over the "
                              "1.0 GiB budget. Use smaller sizes or fewer images (or raise REPSCOPE_MEMORY_BUDGET).")


def test_parse_bytes_and_format_bytes():
    assert bounds.parse_bytes("512M") == 512 << 20 and bounds.parse_bytes("2GiB") == 2 << 30
    assert bounds.parse_bytes("1000") == 1000 and bounds.format_bytes(1536) == "1.5 KiB"
    assert bounds.format_bytes(12) == "12 B" and bounds.format_bytes(3 << 40) == "3.0 TiB"

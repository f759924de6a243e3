import pytest

from simseg.errors import SimsegError
from simseg.sizes import format_size, parse_size


@pytest.mark.parametrize("text,count", [("250", 250), (250, 250), ("1k", 1000), ("1.5k", 1500), ("45k", 45_000),
                                        ("200K", 200_000), ("2M", 2_000_000), (" 6k ", 6000)])
def test_parse(text, count):
    assert parse_size(text) == count


@pytest.mark.parametrize("text", ["", "k", "1.5", "0", "-3", "1.2345k", "lots", "1e3"])
def test_parse_rejects(text):
    with pytest.raises(SimsegError, match="data.subset"):
        parse_size(text, "data.subset")


@pytest.mark.parametrize("count,text", [(250, "250"), (1000, "1k"), (1500, "1.5k"), (45_000, "45k"), (1234, "1234")])
def test_format_inverts_parse(count, text):
    assert format_size(count) == text and parse_size(format_size(count)) == count

from simseg.errors import SimsegError, one_line


def test_one_line_of_a_plain_error():
    assert one_line(SimsegError("data.source x does not exist: check the path")) == \
        "data.source x does not exist: check the path"


def test_one_line_unwraps_a_dataloader_worker_error():
    wrapped = SimsegError("Caught SimsegError in DataLoader worker process 0.\nOriginal Traceback (most recent call "
                          "last):\n  File \"x.py\", line 1, in f\n"
                          "simseg.errors.SimsegError: image a.jpg cannot be read")
    assert one_line(wrapped) == "image a.jpg cannot be read"

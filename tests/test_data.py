import gzip

import pytest

from compression.train.data import DataError, load_split


def write(path, text: bytes, gz=True):
    if gz:
        with gzip.open(path, "wb") as f:
            f.write(text)
    else:
        path.write_bytes(text)


def test_shipped_splits_are_parallel():
    for split, n in [("train", 29000), ("val", 1014), ("test_2016_flickr", 1000)]:
        pairs = load_split(split)
        assert len(pairs) == n
        assert all(s and t for s, t in pairs)


def test_line_count_mismatch(tmp_path):
    write(tmp_path / "x.en.gz", b"a\nb\n")
    write(tmp_path / "x.de.gz", b"a\n")
    with pytest.raises(DataError, match="2 lines but x.de.gz has 1"):
        load_split("x", tmp_path)


def test_undecodable_bytes(tmp_path):
    write(tmp_path / "x.en", b"ok\n\xff\xfe bad\n", gz=False)
    write(tmp_path / "x.de", b"ok\nauch ok\n", gz=False)
    with pytest.raises(DataError, match="line 2 is not valid UTF-8"):
        load_split("x", tmp_path)


def test_missing_file(tmp_path):
    write(tmp_path / "x.en.gz", b"a\n")
    with pytest.raises(DataError, match="missing data file"):
        load_split("x", tmp_path)


def test_empty_sentence(tmp_path):
    write(tmp_path / "x.en.gz", b"a\n\nc\n")
    write(tmp_path / "x.de.gz", b"a\nb\nc\n")
    with pytest.raises(DataError, match=r"empty sentence on line\(s\) \[2\]"):
        load_split("x", tmp_path)

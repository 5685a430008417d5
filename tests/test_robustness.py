"""BLEU per source-length bucket and the retention the report derives from it."""

from compression.analysis.robustness import BASE, from_metrics, markdown, retention
from compression.train.evaluate import bucket_label, length_buckets


def words(n):
    return " ".join(["w"] * n)


def test_bucket_labels():
    assert [bucket_label(n) for n in (1, 10, 11, 15, 16, 20, 21, 80)] == [
        "1-10", "1-10", "11-15", "11-15", "16-20", "16-20", "21+", "21+"]
    assert bucket_label(4, (3,)) == "4+"


def test_length_buckets_group_by_source_words_and_score_each_group():
    refs = ["ein Hund rennt über die grüne Wiese", "zwei Katzen schlafen auf dem roten Sofa",
            "eine Frau liest ein dickes Buch im Park"]
    sources = [words(3), words(12), words(25)]
    hyps = [refs[0], "völlig andere Wörter hier stehen jetzt", refs[2]]
    b = length_buckets(sources, hyps, refs)
    assert list(b) == ["1-10", "11-15", "21+"]  # no 16-20 sentence: no bucket
    assert b["1-10"] == {"sentences": 1, "bleu": 100.0}
    assert b["11-15"]["bleu"] < 5 and b["21+"]["bleu"] == 100.0


def test_retention_per_bucket_and_the_report_table():
    def s(all_, short, long_):
        return {"bleu": all_, "buckets": {"1-10": {"sentences": 4, "bleu": short}, "21+": {"sentences": 2, "bleu": long_}}}

    scores = {BASE: {"test_2016_flickr": s(40.0, 50.0, 20.0), "val": s(40.0, 50.0, 20.0)},
              "v": {"test_2016_flickr": s(38.0, 50.0, 10.0), "val": s(39.0, 49.0, 19.0)}}
    r = retention(scores, "v", "test_2016_flickr")
    assert r == {"all": 0.95, "1-10": 1.0, "21+": 0.5}
    assert retention(scores, "missing", "val") == {}
    text = "\n".join(markdown(scores, ["v"], {"v": 50.0}))
    assert "| v | 50.00 | 95.0% | 100.0% | 50.0% | 50.0% |" in text  # the worst bucket last
    metrics = {"test_2016_flickr": {"greedy": {"bleu": 1.0, "buckets": {}}}, "val": {"greedy": {"bleu": 2.0, "buckets": {}}}}
    assert from_metrics(metrics) == {"test_2016_flickr": {"bleu": 1.0, "buckets": {}}, "val": {"bleu": 2.0, "buckets": {}}}
    assert from_metrics({**metrics, "val": {"limit": 16, "greedy": {"bleu": 2.0, "buckets": {}}}}) is None

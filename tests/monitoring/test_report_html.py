"""The drift report's HTML page: well-formed, self-contained, escaped, a plot per drifted feature, the right summary."""

import re
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest

from functions.monitoring import report_html
from functions.monitoring.check import check_model
from functions.shared.reference import OTHER, CategoricalReference, NumericReference, Reference
from tests.monitoring.helpers import capture, instances, shifted_instances

HOSTILE = '<script>alert("x")</script>'
VOID = {"meta", "br", "img", "input", "hr", "link"}  # HTML void elements; SVG ones close with "/>"


class Checker(HTMLParser):
    """Every element closed in order; the text, tags and attributes as a browser reads them."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []
        self.errors: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(page: str) -> Checker:
    checker = Checker()
    checker.feed(page)
    checker.close()
    assert checker.errors == [] and checker.stack == [], (checker.errors, checker.stack)
    return checker


def entry(drifted: bool, **extra) -> dict:
    return {"kind": "numeric", "test": "ks", "statistic": 0.3 if drifted else 0.05, "pvalue": 1e-9 if drifted else 0.6,
            "threshold": 0.0025, "drifted": drifted, "psi": 0.4 if drifted else 0.01, "samples": 500,
            "reference_samples": 800, **extra}


def report(**changes) -> dict:
    base = {"model": "churn", "version": 3, "window_hours": 24, "samples": 500, "drifted": True,
            "dataset_drift": False, "drift_share": 1 / 3, "prediction_drift": False, "prediction": None,
            "prediction_note": "prediction drift not checked: the window carries no model outputs",
            "features": {"tenure": entry(True), "charges": entry(False),
                         "plan": entry(False, kind="categorical", test="chisquare", unseen=0)},
            "generated_at": "2026-05-06T10:30:00+00:00", "reference": {"source": "version"}}
    return {**base, **changes}


def plots_for(names: list[str]) -> dict:
    return {name: report_html.Distribution("numeric", ["0 to 1", "1 to 2"], [0.5, 0.5], [0.2, 0.8], 800, 500)
            for name in names}


def test_the_page_is_well_formed_self_contained_and_says_the_summary_first():
    page = report_html.render(report(), plots_for(["tenure"]))

    checker = parse(page)
    tags = [tag for tag, _ in checker.tags]
    assert tags[:2] == ["html", "head"] and "script" not in tags and "link" not in tags and "img" not in tags
    assert not any("src" in attrs or "href" in attrs for _, attrs in checker.tags)  # nothing loaded
    assert re.findall(r"https?://[^\"' ]+", page) == ["http://www.w3.org/2000/svg"]  # a namespace, not fetched
    body = "".join(checker.text)
    first = body.index("1 of 3 features drifted")
    assert first < body.index("tenure") and first < body.index("Features")
    assert ("1 of 3 features drifted; dataset drift: no; prediction drift: not checked (500 captured rows)."
            in body)


@pytest.mark.parametrize(("changes", "sentence"), [
    ({}, "1 of 3 features drifted; dataset drift: no; prediction drift: not checked (500 captured rows)."),
    ({"dataset_drift": True, "prediction_drift": True, "prediction": {"name": "__output__", **entry(True)}},
     "1 of 3 features drifted; dataset drift: yes; prediction drift: yes (500 captured rows)."),
    ({"prediction": {"name": "__output__", **entry(False)}, "samples": 1234567},
     "1 of 3 features drifted; dataset drift: no; prediction drift: no (1,234,567 captured rows)."),
    ({"features": {"only": entry(False)}},
     "0 of 1 feature drifted; dataset drift: no; prediction drift: not checked (500 captured rows)."),
    ({"quality": {"window_hours": 24, "labels": 90, "unmatched": 10, "labelled": 80, "accuracy": 0.9125, "f1": 0.5,
                  "roc_auc": None, "by_version": {"3": {"labelled": 80, "accuracy": 0.9125}}}},
     "1 of 3 features drifted; dataset drift: no; prediction drift: not checked; quality: accuracy 0.9125, f1 0.5 "
     "over 80 labelled predictions (500 captured rows)."),
    ({"quality": {"window_hours": 24, "labels": 0, "unmatched": 0, "labelled": 0, "mae": None, "rmse": None}},
     "1 of 3 features drifted; dataset drift: no; prediction drift: not checked; quality: no labelled predictions "
     "in the window (500 captured rows)."),
    ({"samples": 0, "note": "no captured requests in the last 24 hours: nothing to compare", "features": {}},
     "no captured requests in the last 24 hours: nothing to compare"),
])
def test_the_summary_sentence(changes, sentence):
    assert report_html.summary(report(**changes)) == sentence
    assert sentence in "".join(parse(report_html.render(report(**changes))).text)


def svg_count(page: str) -> int:
    return len(re.findall(r"<svg\b", page))


def test_a_plot_per_drifted_feature_and_none_otherwise():
    drifted = report(features={"a": entry(True), "b": entry(True), "c": entry(False)})
    assert svg_count(report_html.render(drifted, plots_for(["a", "b", "c"]))) == 2  # c's data is not drawn
    calm = report(drifted=False, features={"a": entry(False), "b": entry(False)})
    page = report_html.render(calm, plots_for(["a", "b"]))
    assert svg_count(page) == 0 and "Drifted features" not in page


def test_a_drifted_feature_without_data_says_so_instead_of_a_plot():
    page = report_html.render(report())
    assert svg_count(page) == 0 and "no distribution to plot" in page


def test_hostile_names_are_text_never_markup():
    categories = np.asarray(["basic", HOSTILE, OTHER], dtype=str)
    hostile_report = report(model=HOSTILE, features={HOSTILE: entry(True, note=HOSTILE, extra=HOSTILE),
                                                     "plan": entry(True, kind="categorical")},
                            note=HOSTILE, reference={"source": "profile", "warning": HOSTILE})
    plots = {HOSTILE: report_html.numeric_distribution(np.arange(100.0), np.arange(50.0) + 20),
             "plan": report_html.categorical_distribution(categories, np.asarray([5, 3, 2]),
                                                          ["basic", HOSTILE, "<b>new</b>"])}

    page = report_html.render(hostile_report, plots)

    checker = parse(page)
    assert "<script" not in page and "<b>" not in page
    assert [tag for tag, _ in checker.tags if tag in {"script", "b"}] == []
    assert HOSTILE in "".join(checker.text)  # shown to the reader as it is
    assert svg_count(page) == 2


def test_missing_sections_and_new_keys_render():
    assert parse(report_html.render({}))  # nothing at all: still a page
    odd = report(features={"x": "not an entry", "y": {"drifted": "yes"}, "z": entry(True, new_statistic=0.123)},
                 prediction={"name": "__output__", "drifted": True}, quality={"metrics": {"mae": 1.5}, "count": 7},
                 extra_section={"anything": [1, 2]})
    page = report_html.render(odd)
    text = "".join(parse(page).text)
    assert "new_statistic" in text and "0.123" in text  # a key other helpers add shows as a column
    assert "Model quality" in text and "mae" in text and "quality: mae 1.5 over 7 labelled predictions" in text
    nested = report_html.render(report(quality={"labelled": 5, "accuracy": 0.8, "by_version": {"3": {"f1": 0.25}}}))
    assert "by_version / 3 / f1" in "".join(parse(nested).text)
    assert "1 of 3 features drifted" in text  # "yes" (a string) is not a verdict


def test_numeric_distribution_shares_bins_between_reference_and_live():
    reference = np.sort(np.random.default_rng(0).normal(0, 1, 2000))
    live = pd.Series(np.r_[np.random.default_rng(1).normal(1, 1, 300), [np.nan, np.inf, 1e12]], dtype=object)

    plot = report_html.numeric_distribution(reference, live)

    assert plot is not None and plot.kind == "numeric" and len(plot.labels) == report_html.BINS
    assert plot.reference_count == 2000 and plot.live_count == 301  # the outlier counts, in the last bin
    assert sum(plot.reference) == pytest.approx(1) and sum(plot.live) == pytest.approx(1)
    assert plot.live[-1] > 0
    assert report_html.numeric_distribution(reference, [None, "x"]) is None
    constant = report_html.numeric_distribution(np.ones(10), [1.0, 1.0])
    assert constant is not None and sum(constant.live) == pytest.approx(1)


def test_categorical_distribution_keeps_unseen_categories_and_sums_the_tail():
    categories = np.asarray([f"c{i}" for i in range(30)] + [OTHER], dtype=str)
    plot = report_html.categorical_distribution(categories, np.arange(1, 32), ["c29"] * 5 + ["never-seen"] * 5)

    assert plot is not None and len(plot.labels) == report_html.MAX_BARS and plot.labels[-1] == "(other)"
    assert "never-seen" in plot.labels and "c29" in plot.labels
    assert sum(plot.reference) == pytest.approx(1) and sum(plot.live) == pytest.approx(1)
    assert report_html.categorical_distribution(categories, np.arange(1, 32), []) is None


def test_distributions_are_drawn_for_drifted_columns_only():
    reference = Reference(columns={
        "tenure": NumericReference(sample=np.arange(100.0), rows=100, missing=0),
        "charges": NumericReference(sample=np.arange(100.0), rows=100, missing=0),
        "plan": CategoricalReference(categories=np.asarray(["a", "b"]), counts=np.asarray([60, 40]), rows=100),
    }, output=CategoricalReference(categories=np.asarray(["0", "1"]), counts=np.asarray([50, 50]), rows=100))
    live = pd.DataFrame({"tenure": np.arange(50.0) + 70, "charges": np.arange(50.0), "plan": ["a"] * 50})
    drifted = report(features={"tenure": entry(True), "charges": entry(False), "plan": entry(True),
                               "absent": entry(True)},
                     prediction={"name": "__output__", **entry(True)})

    plots = report_html.distributions(drifted, reference, live, outputs=["1"] * 50)

    assert set(plots) == {"tenure", "plan", "__output__"}
    assert plots["plan"].kind == "categorical" and plots["plan"].live == [1.0, 0.0]
    assert report_html.distributions(drifted, reference, live) .keys() == {"tenure", "plan"}  # no live outputs


NOW = datetime(2026, 5, 6, 10, 30, tzinfo=UTC)


def test_a_check_writes_the_page_beside_the_json(churn_champion, stores):
    capture(stores.objects, NOW - timedelta(minutes=1), shifted_instances())

    result = check_model(stores.objects, stores.registry, stores.datasets, model="churn", window_hours=24,
                         psi_threshold=0.2, ks_pvalue=0.01, now=NOW)

    assert result["html_key"] == result["report_key"].removesuffix(".json") + ".html"
    page = stores.objects.get_bytes(result["html_key"]).decode()
    drifted = [name for name, feature in result["features"].items() if feature["drifted"]]
    assert drifted and svg_count(page) == len(drifted)
    assert report_html.summary(result) in "".join(parse(page).text)
    assert result["report_key"] in page


def test_a_check_of_calm_traffic_draws_no_plot(churn_champion, stores):
    capture(stores.objects, NOW - timedelta(minutes=1), instances(churn_champion.rows))

    result = check_model(stores.objects, stores.registry, stores.datasets, model="churn", window_hours=24,
                         psi_threshold=0.2, ks_pvalue=0.01, now=NOW)

    page = stores.objects.get_bytes(result["html_key"]).decode()
    assert result["drifted"] is False and svg_count(page) == 0
    assert "0 of 4 features drifted" in page

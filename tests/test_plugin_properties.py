"""Hostile input to every route of the Plateau tab, property-based.

Requests go through werkzeug's test client into TensorBoard's own WSGI app,
with TensorBoard's Python loader over a real logdir (`write_hostile_logdir`:
markup in run, tag, layer and function names; NaN and ±Inf in scalars,
vectors and the configuration record; a corrupt, a truncated, an empty and a
newer-version event file). Whatever the parameters, no answer is a 500, every
body is JSON that parses with bare NaN/Infinity rejected, and an error is a
400/404 (or 422 for a run that could not be diagnosed) carrying a message.
The static routes never serve anything but the allow-listed frontend files.
"""

import gzip
import importlib.resources
import json
import urllib.parse

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tb_plateau import plugin
from tb_plateau.plugin import bodies
from tests import plugin_logdirs

PREFIX = "/data/plugin/plateau"
ROUTES = ("/runs", "/diagnosis", "/series")
ERROR_CODES = (400, 404, 422)
PROPERTY_SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# Spellings of "go up a directory", of separators and of absolute paths.
TRAVERSALS = [
    "..",
    "../",
    "../../etc/passwd",
    "..%2f..%2fetc%2fpasswd",
    "%2e%2e/",
    "%2e%2e%2f",
    "%2E%2E%5C",
    "..\\..\\cli.py",
    "..%5ccli.py",
    "/etc/passwd",
    "C:\\Windows\\win.ini",
    "\\\\server\\share",
    "....//",
    "%252e%252e%252f",
    ".%00.",
    "%00",
    "\x00",
    "file:///etc/passwd",
]


def _reject_constant(name):
    raise ValueError("bare %s in a JSON body" % name)


def strict_json(response):
    """The body, parsed with bare NaN/Infinity/-Infinity refused."""
    assert response.headers["Content-Type"].startswith("application/json"), (
        response.status_code,
        response.headers["Content-Type"],
    )
    return json.loads(response.get_data(as_text=True), parse_constant=_reject_constant)


@pytest.fixture(scope="module")
def logdir(tmp_path_factory):
    return plugin_logdirs.write_hostile_logdir(str(tmp_path_factory.mktemp("hostile")))


@pytest.fixture(scope="module")
def server(logdir):
    return plugin_logdirs.WsgiServer(logdir)


@pytest.fixture(scope="module")
def listed(server):
    runs = server.runs()
    strict_json(server.get(PREFIX + "/runs"))
    return runs


def _check_json_answer(response, route):
    assert response.status_code in (200,) + ERROR_CODES, (
        response.status_code,
        response.get_data(as_text=True)[:500],
    )
    body = strict_json(response)
    if response.status_code != 200:
        assert isinstance(body.get("error"), str) and body["error"], body
    elif route == "/runs":
        assert isinstance(body["runs"], list)
    elif route == "/diagnosis":
        assert body["verdict"] in ("healthy", "warning", "critical")
    else:
        assert body["kind"] in ("scalar", "vector", "config")
    return body


# -- strategies -----------------------------------------------------------------

_runs_and_tags = [
    plugin_logdirs.NONFINITE_RUN,
    plugin_logdirs.HTML_NAMES_RUN,
    plugin_logdirs.CORRUPT_RUN,
    plugin_logdirs.TRUNCATED_RUN,
    plugin_logdirs.EMPTY_RUN,
    plugin_logdirs.SYNTHETIC_NEWER_RUN,
    *plugin_logdirs.ODD_NAME_RUNS,
    "plateau/grad_norm",
    "plateau/batch_loss",
    "plateau/config",
    "plateau/",
    "plateau/epoch/",
    plugin_logdirs.HTML_LOSS_TAG,
]

hostile_text = st.one_of(
    st.sampled_from(_runs_and_tags + TRAVERSALS),
    st.text(max_size=40),
    st.text(alphabet=st.characters(max_codepoint=0x1F), max_size=10),  # control characters
    st.builds(lambda a, b: a + b, st.sampled_from(_runs_and_tags), st.sampled_from(TRAVERSALS)),
    st.integers(4000, 20_000).map(lambda n: "r" * n),  # very long
)


def _encoded(value):
    """A query value as bytes on the wire: percent-encoded, raw, or arbitrary bytes."""
    if isinstance(value, bytes):
        return urllib.parse.quote_from_bytes(value, safe="")
    return urllib.parse.quote(value, safe="", errors="surrogatepass")


query_value = st.one_of(
    hostile_text.map(_encoded),
    st.sampled_from(TRAVERSALS).filter(lambda t: "\x00" not in t),  # sent unencoded
    st.binary(max_size=12).map(_encoded),  # invalid UTF-8 included
    st.sampled_from(["%", "%z", "%zz", "%ff%fe", "%ED%A0%80", "%C0%AE%C0%AE%2F", "+", "&", "="]),
)
query_key = st.one_of(
    st.sampled_from(["run", "tag", "run", "tag", "RUN", "run[]", "", "experiment", "x"]),
    st.text(max_size=8).map(_encoded),
)
query = st.lists(st.tuples(query_key, query_value), max_size=5).map(
    lambda pairs: "&".join("%s=%s" % pair for pair in pairs)
)


# -- JSON routes ------------------------------------------------------------------


@PROPERTY_SETTINGS
@given(route=st.sampled_from(ROUTES), query_string=query)
def test_any_query_answers_json_never_500(server, route, query_string):
    response = server.client.get(PREFIX + route + "?" + query_string)
    _check_json_answer(response, route)


@PROPERTY_SETTINGS
@given(run=hostile_text, tag=hostile_text, duplicate=st.booleans())
def test_any_run_and_tag_answer_json_never_500(server, run, tag, duplicate):
    pairs = [("run", run), ("tag", tag)]
    if duplicate:
        pairs += [("run", tag), ("tag", run)]
    query_string = urllib.parse.urlencode(pairs, errors="surrogatepass")
    for route in ROUTES:
        _check_json_answer(server.client.get(PREFIX + route + "?" + query_string), route)


@PROPERTY_SETTINGS
@given(run=st.sampled_from(_runs_and_tags), tag=st.sampled_from(_runs_and_tags))
def test_known_names_answer_json_never_500(server, run, tag):
    for route in ROUTES:
        response = server.get(PREFIX + route, run=run, tag=tag)
        _check_json_answer(response, route)


def test_missing_parameters_are_400(server):
    for route, params in [
        ("/diagnosis", {}),
        ("/diagnosis", {"tag": "plateau/grad_norm"}),
        ("/series", {}),
        ("/series", {"run": plugin_logdirs.NONFINITE_RUN}),
        ("/series", {"tag": "plateau/grad_norm"}),
    ]:
        response = server.get(PREFIX + route, **params)
        assert response.status_code == 400
        assert "missing" in strict_json(response)["error"]


def test_every_listed_series_is_strict_json_with_nonfinite_values_as_strings(server, listed):
    seen_nonfinite = set()
    for run, entry in listed.items():
        response = server.get(PREFIX + "/diagnosis", run=run)
        _check_json_answer(response, "/diagnosis")
        for tag in entry["series"]:
            response = server.get(PREFIX + "/series", run=run, tag=tag)
            body = _check_json_answer(response, "/series")
            assert response.status_code == 200, (run, tag)
            text = response.get_data(as_text=True)
            for spelling in ('"NaN"', '"Infinity"', '"-Infinity"'):
                if spelling in text:
                    seen_nonfinite.add((body["kind"], spelling))
    # The nonfinite run put NaN and both infinities in a scalar, a vector and
    # the configuration record; each came back as a string.
    kinds = {kind for kind, _ in seen_nonfinite}
    spellings = {spelling for _, spelling in seen_nonfinite}
    assert kinds == {"scalar", "vector", "config"}, seen_nonfinite
    assert spellings == {'"NaN"', '"Infinity"', '"-Infinity"'}, seen_nonfinite


def test_nonfinite_values_keep_their_place(server):
    body = strict_json(
        server.get(PREFIX + "/series", run=plugin_logdirs.NONFINITE_RUN, tag="plateau/batch_loss")
    )
    by_step = dict(zip(body["steps"], body["values"]))
    assert by_step[30] == "NaN" and by_step[40] == "Infinity"
    config = strict_json(
        server.get(PREFIX + "/series", run=plugin_logdirs.NONFINITE_RUN, tag="plateau/config")
    )["config"]
    assert config["optimizer"]["config"] == {"learning_rate": "NaN", "momentum": "Infinity"}


# -- broken runs ------------------------------------------------------------------


@pytest.mark.parametrize(
    "run",
    [
        plugin_logdirs.CORRUPT_RUN,
        plugin_logdirs.CORRUPT_HEADER_RUN,
        plugin_logdirs.SYNTHETIC_NEWER_RUN,
    ],
)
def test_run_not_fully_read_says_so_and_never_looks_clean(server, listed, run):
    entry = listed[run]
    assert entry["incomplete"] is True
    assert entry["problems"] and all(isinstance(p, str) and p for p in entry["problems"])
    body = strict_json(server.get(PREFIX + "/diagnosis", run=run))
    assert body["run"] == run and body.get("incomplete") is True
    for problem in entry["problems"]:
        assert problem in body["problems"]
    assert entry["status"] == body["status"]
    if body["verdict"] == "healthy":
        assert body["status"] == "incomplete"


def test_cut_off_last_record_is_a_note_not_a_failure(listed):
    entry = listed[plugin_logdirs.TRUNCATED_RUN]
    assert entry["incomplete"] is False
    assert entry["problems"], entry


def test_broken_runs_leave_the_others_alone(server, listed):
    for run in (plugin_logdirs.NONFINITE_RUN, plugin_logdirs.HTML_NAMES_RUN):
        assert listed[run]["verdict"] == "critical" and not listed[run]["incomplete"]
        assert listed[run]["problems"] == []
    for run in plugin_logdirs.ODD_NAME_RUNS:
        assert listed[run]["verdict"] == "healthy" and listed[run]["problems"] == []
        body = strict_json(server.get(PREFIX + "/diagnosis", run=run))
        assert body["run"] == run
    # An empty event file holds no run to diagnose.
    assert plugin_logdirs.EMPTY_RUN not in listed


# -- static files -------------------------------------------------------------------


def _allowed_bodies():
    files = importlib.resources.files("tb_plateau.frontend")
    return {files.joinpath(name).read_bytes() for name in plugin._STATIC_FILES}


def _plugin_source():
    # A Python source of the package beside the frontend: never to be served.
    return importlib.resources.files("tb_plateau").joinpath("cli.py").read_bytes()


_path_segments = st.sampled_from(
    [
        "..",
        ".",
        "%2e%2e",
        "%2E%2E",
        "%252e%252e",
        "..%2f",
        "%2f",
        "%5c",
        "\\",
        "..\\",
        "",
        "index.js",
        "style.css",
        "vendor",
        "echarts.esm.min.js",
        "LICENSE-echarts.txt",
        "cli.py",
        "__init__.py",
        "tb_plateau",
        "frontend",
        "etc",
        "passwd",
        "%00",
        "runs",
        "index.js%00.png",
        "~",
        "C:",
    ]
)


def _assert_static_answer_is_safe(response, allowed, source):
    body = response.get_data()
    if response.headers.get("Content-Encoding") == "gzip":
        body = gzip.decompress(body)
    assert response.status_code < 500, response.status_code
    assert source not in body and b"class PlateauPlugin" not in body
    assert b"root:x:0:0" not in body
    if response.status_code == 200 and not response.headers["Content-Type"].startswith(
        ("application/json", "text/html")
    ):
        # text/html: TensorBoard's own index page, never a file of ours.
        assert body in allowed, (response.headers["Content-Type"], body[:200])


@PROPERTY_SETTINGS
@given(segments=st.lists(_path_segments, min_size=1, max_size=6))
def test_static_routes_serve_only_the_allow_list(server, segments):
    allowed = _allowed_bodies()
    source = _plugin_source()
    response = server.client.get(PREFIX + "/" + "/".join(segments))
    _assert_static_answer_is_safe(response, allowed, source)


@pytest.mark.parametrize(
    "path",
    [
        PREFIX + "/../../..",
        PREFIX + "/../../../cli.py",
        PREFIX + "/%2e%2e/%2e%2e/cli.py",
        PREFIX + "/..%2f..%2fcli.py",
        PREFIX + "/index.js/../cli.py",
        PREFIX + "/index.js/..%2fcli.py",
        PREFIX + "/vendor/../../cli.py",
        PREFIX + "/vendor/..%5c..%5ccli.py",
        PREFIX + "/vendor\\..\\..\\cli.py",
        PREFIX + "//etc/passwd",
        PREFIX + "/%2fetc%2fpasswd",
        PREFIX + "/index.js%00",
        PREFIX + "/index.js/",
        PREFIX + "/vendor/",
        PREFIX + "/vendor/LICENSE-echarts.txt",
        PREFIX + "/__init__.py",
        PREFIX + "/cli.py",
        PREFIX + "/",
        PREFIX,
    ],
)
def test_traversal_attempts_serve_nothing_of_ours(server, path):
    response = server.client.get(path)
    _assert_static_answer_is_safe(response, _allowed_bodies(), _plugin_source())
    assert response.status_code != 200 or response.headers["Content-Type"].startswith(
        "text/javascript"
    ), (path, response.status_code, response.headers["Content-Type"])


def test_allow_listed_files_still_served(server):
    allowed = _allowed_bodies()
    for name in plugin._STATIC_FILES:
        response = server.client.get(PREFIX + "/" + name)
        assert response.status_code == 200
        body = response.get_data()
        if response.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        assert body in allowed


# -- downsampling of arbitrary series --------------------------------------------------

_values = st.lists(
    st.one_of(
        st.floats(allow_nan=True, allow_infinity=True, width=64),
        st.sampled_from([0.0, 1.0, -1.0]),
    ),
    max_size=3000,
)


@settings(max_examples=200, deadline=None)
@given(values=_values, max_points=st.integers(1, 200))
def test_downsampling_keeps_extremes_and_first_nonfinite(values, max_points):
    values = np.asarray(values, dtype=np.float64)
    keep = bodies.downsample_min_max(values, max_points)
    assert np.all(np.diff(keep) > 0)
    if len(values) == 0:
        assert len(keep) == 0
        return
    assert keep[0] == 0 and keep[-1] == len(values) - 1
    assert len(keep) <= max(len(values) if len(values) <= max_points else 0, 3 * max_points + 2)
    kept = values[keep]
    finite = values[np.isfinite(values)]
    if finite.size:
        assert np.nanmin(np.where(np.isfinite(kept), kept, np.nan)) == finite.min()
        assert np.nanmax(np.where(np.isfinite(kept), kept, np.nan)) == finite.max()
    if not np.all(np.isfinite(values)):
        assert not np.all(np.isfinite(kept))

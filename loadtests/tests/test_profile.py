"""make profile's tables: py-spy's raw stacks counted per endpoint, layer and function."""

from loadtests import profile

# Stacks as py-spy's raw format writes them (outermost first), with the counts it appends.
RAW = """\
process 41:"gunicorn: worker [tally]";run (gunicorn/workers/sync.py:125);handle (gunicorn/workers/sync.py:180);__call__ (django/core/handlers/wsgi.py:124);survey_page (surveys/views.py:150);render (django/shortcuts.py:25);render (django/template/base.py:171) 30
process 41:"gunicorn: worker [tally]";run (gunicorn/workers/sync.py:125);survey_page (surveys/views.py:151);page_inputs_html (surveys/forms.py:100);write (surveys/rendering.py:190) 10
process 42:"gunicorn: worker [tally]";run (gunicorn/workers/sync.py:125);survey_page (surveys/views.py:139);is_valid (django/forms/forms.py:197);full_clean (django/forms/forms.py:320) 5
process 42:"gunicorn: worker [tally]";run (gunicorn/workers/sync.py:125);survey_page (surveys/views.py:141);response_submit_page (surveys/services.py:70);execute (psycopg/cursor.py:97) 15
process 42:"gunicorn: worker [tally]";run (gunicorn/workers/sync.py:125);survey_results (surveys/views.py:230);get (django_redis/cache.py:116);recv_into (redis/connection.py:300) 20
process 43:"gunicorn: worker [tally]";run (gunicorn/workers/sync.py:125);__call__ (tally/middleware.py:120);process_response (django/contrib/sessions/middleware.py:40) 15
process 43:"gunicorn: worker [tally]";<module> (json/decoder.py:1) 5
process 41:"gunicorn: worker [tally]";run (gunicorn/workers/sync.py:125);wrapped (routing/state.py:61);survey_page (surveys/views.py:160);response_answers (surveys/selectors.py:170);decode (json/decoder.py:337) 7
process 41:"gunicorn: worker [tally]";run (gunicorn/workers/sync.py:125);wait (gunicorn/workers/sync.py:36) 3
not a stack line
"""  # noqa: E501


def test_samples_are_counted_per_endpoint_with_a_page_get_and_post_apart():
    summary = profile.summarise(profile.parse(RAW))
    assert summary["endpoints"] == {
        "survey_page GET": 47,
        "survey_page POST": 20,
        "survey_results": 20,
        "(outside a view)": 23,
    }
    # The app's own code is the app's, though the read router's decorator wraps every view.
    assert summary["layers"]["survey_page GET"] == {
        "templates": 30,
        "forms and rendering": 10,
        "the app": 7,
    }
    assert summary["layers"]["survey_page POST"] == {
        "forms and rendering": 5,
        "database driver": 15,
    }
    assert summary["layers"]["survey_results"] == {"Redis": 20}
    assert summary["layers"]["(outside a view)"] == {
        "sessions": 15,
        "other (the standard library, outside the app)": 5,
        "gunicorn": 3,
    }
    assert summary["functions"]["survey_page GET"]["render (django/template/base.py)"] == 30


def test_the_report_gives_each_endpoints_share_and_its_layers():
    summary = profile.summarise(profile.parse(RAW))
    text = profile.page(summary, {"host": "web1", "seconds": 30, "rate": 100, "shape": "soak"})
    assert "| survey_page GET | 42.7% |" in text  # 47 of 110
    assert "| templates | 63.8% |" in text  # 30 of survey_page GET's 47
    assert "110 busy samples" in text
